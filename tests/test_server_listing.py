"""The server lists an S3 job's inputs while the job runs: CreateTransformJob answers once it
has seen one input, the job's first objects are transformed before the listing ends, a listing
that a crash or shutdown interrupted goes on after the objects it had stored, and a listing that
fails once the job has begun fails the job, naming the cause, with nothing partial left.

S3 is moto's server; `ListingProxy` in front of it holds back or denies the listing's later pages."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

from conveyor.engine.job import plan_work_items
from conveyor.engine.store_link import add_planned_items
from conveyor.sagemaker import parse_transform_job
from conveyor.service import Service
from conveyor.service.objects_text import objects_text
from conveyor.settings import Settings
from tests.models import BRACKET, write_model
from tests.s3_proxy import S3Proxy
from tests.s3_server import S3Server

PAGE = 1000  # keys in one ListObjectsV2 page


class ListingProxy(S3Proxy):
    """Holds a listing's later pages until an output has been written (`hold`), and then
    denies them (`deny`)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.hold = self.deny = False
        self.output_written = threading.Event()
        self.released = threading.Event()  # a held page also waits for this, at most `hold_seconds`
        self.released.set()
        self.hold_seconds = 30.0
        self.held_until_output: bool | None = None

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        if request.command in ("PUT", "POST") and "/out/" in request.path:
            self.output_written.set()
        if request.command == "GET" and "continuation-token=" in request.path:
            if self.hold:
                self.held_until_output = self.output_written.wait(30)
                self.released.wait(self.hold_seconds)
            if self.deny:
                return self.error(request, 403, "AccessDenied", "Access Denied")
        self.forward(request, body)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[ListingProxy]:
    with ListingProxy(s3_server.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def service(tmp_path: Path, proxy: ListingProxy) -> Iterator[Service]:
    """The service (its scheduler not started yet) with the model `bracket`, its S3 behind the proxy."""
    service = Service(Settings(home=tmp_path / "home", s3_endpoint_url=proxy.endpoint_url))
    service.sagemaker.create_model({"ModelName": "bracket", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": str(write_model(tmp_path, BRACKET))}})
    yield service
    service.close()


def put_inputs(s3: Any, bucket: str, count: int) -> list[str]:
    """`count` one-line objects under `in/`, in two folders; their keys in key order."""
    keys = [f"in/{'a' if number < count // 2 else 'b'}/{number:04d}.csv" for number in range(count)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=f"{int(key[5:9])}\n".encode())
    return keys


def request(bucket: str, name: str = "listing") -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": "bracket",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}}, "ContentType": "text/csv"},
        "TransformOutput": {"S3OutputPath": f"s3://{bucket}/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def finished(service: Service, name: str = "listing", timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = service.sagemaker.describe_transform_job({"TransformJobName": name})
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish in {timeout} s")


def job_log(service: Service, name: str = "listing") -> list[str]:
    events = service.logs.filter_log_events({"logGroupName": "/aws/sagemaker/TransformJobs", "logStreamNamePrefix": name})["events"]
    return [event["message"] for event in events]


def output_keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/") for item in page.get("Contents", [])]


def outputs(s3: Any, bucket: str) -> dict[str, str]:
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode() for key in output_keys(s3, bucket)}


def expected_outputs(keys: list[str]) -> dict[str, str]:
    return {f"out/{key[3:]}.out": f"<{int(key[5:9])}\n>" for key in keys}


def test_a_job_is_created_before_its_inputs_are_listed_and_starts_on_their_first_page(
    service: Service, proxy: ListingProxy, s3_bucket: str, s3_server: S3Server
) -> None:
    s3 = s3_server.client()
    keys = put_inputs(s3, s3_bucket, PAGE + 1)
    service.sagemaker.create_transform_job(request(s3_bucket))
    assert service.store.work_items.counts("listing").total == 0 and not service.store.jobs.get("listing").inputs_listed  # type: ignore[union-attr]
    proxy.hold = True
    proxy.released.clear()
    service.start()
    assert proxy.output_written.wait(30)
    progress = service.progress("listing")  # the first page's objects are being written, the second page is not listed
    assert progress["Listing"] and progress["EtaSeconds"] is None and 0 < progress["ObjectsTotal"] <= PAGE
    assert objects_text(progress).endswith(f"/{progress['ObjectsTotal']} objects (listing)")
    proxy.released.set()
    described = finished(service)
    assert not service.progress("listing")["Listing"]
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert proxy.held_until_output  # an object of the first page was written before the second page was listed
    items = service.store.work_items.list("listing")
    assert [item.input_uri for item in items] == [f"s3://{s3_bucket}/{key}" for key in keys]
    assert [item.ordinal for item in items] == list(range(PAGE + 1)) and service.store.jobs.get("listing").inputs_listed  # type: ignore[union-attr]
    assert outputs(s3, s3_bucket) == expected_outputs(keys)
    assert "Starting: the input objects are listed as the job runs." in job_log(service)


@pytest.mark.slow
def test_the_objects_at_the_end_of_a_page_are_transformed_while_the_next_page_is_awaited(
    service: Service, proxy: ListingProxy, s3_bucket: str, s3_server: S3Server
) -> None:
    """The listing adds its items to the job a batch at a time; the batch left at the end of a
    page must not wait for the next page, however long S3 takes to answer."""
    s3 = s3_server.client()
    keys = put_inputs(s3, s3_bucket, PAGE + 1)
    service.sagemaker.create_transform_job(request(s3_bucket))
    proxy.hold, proxy.hold_seconds = True, 300
    proxy.released.clear()
    service.start()
    deadline = time.monotonic() + 240
    while len(written := output_keys(s3, s3_bucket)) < PAGE and time.monotonic() < deadline:
        time.sleep(0.5)
    proxy.released.set()
    assert written == sorted(expected_outputs(keys[:PAGE]))  # every object of the first page, with the second page still held
    described = finished(service)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert outputs(s3, s3_bucket) == expected_outputs(keys)


def test_a_listing_denied_once_the_job_has_begun_fails_it_and_leaves_only_whole_outputs(
    service: Service, proxy: ListingProxy, s3_bucket: str, s3_server: S3Server
) -> None:
    s3 = s3_server.client()
    put_inputs(s3, s3_bucket, PAGE + 1)
    service.sagemaker.create_transform_job(request(s3_bucket))  # its first page is there: created
    proxy.hold = proxy.deny = True  # the second page is denied once the first objects are written
    service.start()
    described = finished(service)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(f"ClientError: Could not list the input data source s3://{s3_bucket}/in/: AccessDenied")
    written = outputs(s3, s3_bucket)
    assert proxy.held_until_output and written  # the job had begun
    assert written == {key: f"<{int(key[6:10])}\n>" for key in written}  # each output whole (S3 shows no partial object)
    assert "Completed." not in job_log(service)


def interrupted_listing(service: Service, bucket: str, listed: int) -> None:
    """The job as a server that died while listing leaves it: started, the items of its first
    `listed` objects stored, its listing not finished."""
    service.sagemaker.create_transform_job(request(bucket))
    job = parse_transform_job(service.store.jobs.get("listing").request)  # type: ignore[union-attr]
    add_planned_items(service.store, "listing", plan_work_items(job, service.settings)[:listed])
    service.store.jobs.mark_started("listing")


def test_a_listing_interrupted_by_a_crash_goes_on_after_the_objects_it_had_stored(service: Service, s3_bucket: str, s3_server: S3Server) -> None:
    s3 = s3_server.client()
    keys = put_inputs(s3, s3_bucket, 10)
    interrupted_listing(service, s3_bucket, listed=4)
    service.start()
    described = finished(service)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    items = service.store.work_items.list("listing")  # each object once, numbered on from where the listing stopped
    assert [item.input_uri for item in items] == [f"s3://{s3_bucket}/{key}" for key in keys]
    assert [item.ordinal for item in items] == list(range(10)) and {item.state for item in items} == {"Done"}
    assert outputs(s3, s3_bucket) == expected_outputs(keys)
    assert "Resuming: 0 of 4 objects listed so far already done; 0 temporary files swept." in job_log(service)


def test_a_listing_whose_inputs_changed_while_it_was_interrupted_fails_the_job(service: Service, s3_bucket: str, s3_server: S3Server) -> None:
    s3 = s3_server.client()
    keys = put_inputs(s3, s3_bucket, 10)
    interrupted_listing(service, s3_bucket, listed=4)
    s3.delete_object(Bucket=s3_bucket, Key=keys[1])  # an object before where the listing stopped: the rest would shift
    service.start()
    described = finished(service)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"] == (
        f"ClientError: The input data source s3://{s3_bucket}/in/ changed while the job was interrupted: its object number 4 "
        f"was s3://{s3_bucket}/{keys[3]} and is now s3://{s3_bucket}/{keys[4]}; the listing cannot go on where it stopped."
    )


def test_the_benchmark_runs_at_a_tiny_size() -> None:
    """benchmarks/server_listing.py end to end, so that it cannot rot; its figures are in
    docs/benchmarks.md."""
    benchmark = Path(__file__).resolve().parent.parent / "benchmarks" / "server_listing.py"
    result = subprocess.run([sys.executable, str(benchmark), "--objects", "50", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for row in ("listing", "create", "first output", "job", "listing / create"):
        assert row in result.stdout
