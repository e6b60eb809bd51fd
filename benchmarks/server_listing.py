"""How soon the server takes and starts an S3 job of many objects, against listing them.

CreateTransformJob on an S3 prefix with an S3 output lists only until it finds one input; the
scheduler lists the rest while the job runs (docs/semantics.md, "Listing"). Before, the request
listed every key first, so its answer came after the whole listing: minutes for a million keys,
past the 60 s that boto3 waits for an answer. This starts moto's S3 server and `conveyor server`,
puts N one-line objects under one prefix, and in each round measures:
  listing          a plain boto3 ListObjectsV2 paginator over the prefix: the least that
                   listing the job's inputs at create costs (the baseline)
  create           CreateTransformJob's answer, over boto3
  first output     from the create until the first `.out` is in the bucket
  job              from the create until DescribeTransformJob says Completed
and prints the medians with the ratio of listing to create. Every output is checked.

    .venv/bin/python benchmarks/server_listing.py --objects 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3_server import CREDENTIALS, REGION, start_moto_server, stop_server  # noqa: E402
from tests.server import start_server  # noqa: E402

IDENTITY = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, accept
"""


def put_objects(s3: Any, bucket: str, count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda number: s3.put_object(Bucket=bucket, Key=f"in/{number:07d}.csv", Body=f"{number}\n".encode()), range(count)))


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for item in page.get("Contents", [])]


def run_job(sm: Any, s3: Any, bucket: str, name: str, instances: int) -> tuple[float, float, float]:
    """(create, first output, job) seconds, each from the create's start."""
    started = time.perf_counter()
    sm.create_transform_job(
        TransformJobName=name, ModelName="identity",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}}, "ContentType": "text/csv"},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/{name}/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": instances},
    )  # fmt: skip
    created = time.perf_counter() - started
    first_output = None
    while True:
        if first_output is None and s3.list_objects_v2(Bucket=bucket, Prefix=f"{name}/", MaxKeys=1).get("KeyCount"):
            first_output = time.perf_counter() - started
        status = sm.describe_transform_job(TransformJobName=name)
        if status["TransformJobStatus"] != "InProgress":
            break
        time.sleep(0.02)
    finished = time.perf_counter() - started
    assert status["TransformJobStatus"] == "Completed", status.get("FailureReason")
    return created, first_output or finished, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()

    os.environ.update(CREDENTIALS, AWS_DEFAULT_REGION=REGION)
    s3_server = start_moto_server()
    work = Path(tempfile.mkdtemp(prefix="conveyor-server-listing-"))
    server = None
    try:
        s3 = s3_server.client()
        bucket = "listing"
        s3.create_bucket(Bucket=bucket)
        put_objects(s3, bucket, args.objects)
        (work / "model" / "code").mkdir(parents=True)
        (work / "model" / "code" / "inference.py").write_text(textwrap.dedent(IDENTITY))
        server = start_server(work / "home", "--s3-endpoint", s3_server.endpoint_url)
        sm = server.client()
        sm.create_model(ModelName="identity", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                        PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{work}/model"})  # fmt: skip
        rows: dict[str, list[float]] = {"listing": [], "create": [], "first output": [], "job": []}
        for round_number in range(args.rounds):
            started = time.perf_counter()
            assert len(keys_under(s3, bucket, "in/")) == args.objects
            rows["listing"].append(time.perf_counter() - started)
            name = f"round-{round_number}"
            created, first_output, finished = run_job(sm, s3, bucket, name, args.instances)
            rows["create"].append(created)
            rows["first output"].append(first_output)
            rows["job"].append(finished)
            written = keys_under(s3, bucket, f"{name}/")
            assert len(written) == args.objects, f"{name} wrote {len(written)} of {args.objects} objects"
        print(f"{args.objects} one-line objects on moto's S3, {args.instances} instances, {args.rounds} rounds, {os.cpu_count()} CPUs")
        for label, seconds in rows.items():
            print(f"  {label:13} {statistics.median(seconds):6.2f} s  ({', '.join(f'{value:.2f}' for value in seconds)})")
        ratio = statistics.median(listing / create for listing, create in zip(rows["listing"], rows["create"]))
        print(f"listing / create: {ratio:.1f}  (CreateTransformJob answers that much sooner than a listing of the inputs)")
    finally:
        if server is not None:
            server.stop()
        stop_server(s3_server.process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
