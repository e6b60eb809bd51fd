"""Data capture manifests (DataCaptureConfig; docs/data-processing.md): where they go, what they list, and that
they are manifests Conveyor itself reads back as a job's input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conveyor.engine.data_capture import capture_folder, common_prefix, manifest_bytes, write_capture_manifests
from conveyor.sagemaker.transform_job import DataCaptureConfig
from conveyor.storage import StorageError, storage_for
from conveyor.storage.base import TEMP_MARKER
from conveyor.storage.inputs import iter_inputs

STARTED = datetime(2022, 8, 30, 0, 49, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("uris", "prefix"),
    [
        (["s3://b/in/a.csv"], "s3://b/in/"),
        (["s3://b/in/a.csv", "s3://b/in/a.csv.gz"], "s3://b/in/"),  # a shared name start is not a folder
        (["s3://b/in/day1/a.csv", "s3://b/in/day2/b.csv", "s3://b/in/day1/c.csv"], "s3://b/in/"),
        (["s3://b/in/day1/a.csv", "s3://b/in/day1/b.csv"], "s3://b/in/day1/"),
        (["s3://b/a.csv", "s3://b/z/b.csv"], "s3://b/"),
        (["file:///data/x.csv", "file:///tmp/y.csv"], "file:///"),
    ],
)
def test_common_prefix_is_cut_at_a_slash(uris: list[str], prefix: str) -> None:
    assert common_prefix(uris) == prefix


def test_manifest_lists_suffixes_in_the_order_given() -> None:
    uris = ["s3://b/out/z.csv.out", "s3://b/out/day1/a.csv.out"]
    assert json.loads(manifest_bytes(uris, empty_prefix="unused")) == [{"prefix": "s3://b/out/"}, "z.csv.out", "day1/a.csv.out"]


def test_empty_manifest_names_only_its_prefix() -> None:
    assert json.loads(manifest_bytes([], empty_prefix="s3://b/out")) == [{"prefix": "s3://b/out/"}]


@pytest.mark.parametrize(
    ("moment", "folder"),
    [
        (STARTED, "2022/08/30/00"),
        (datetime(2022, 8, 30, 2, 49, tzinfo=timezone(timedelta(hours=2))), "2022/08/30/00"),  # converted to UTC
        (datetime(2023, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5))), "2023/01/01/05"),
        (datetime(2022, 12, 31, 23, 59), "2022/12/31/23"),  # naive: taken as UTC
    ],
)
def test_folder_is_the_start_hour_in_utc(moment: datetime, folder: str) -> None:
    assert capture_folder(moment) == folder


def _inputs(root: Path) -> list[str]:
    (root / "in" / "day1").mkdir(parents=True)
    (root / "in" / "a.csv").write_text("1\n")
    (root / "in" / "day1" / "b.csv").write_text("2\n")
    return [f"file://{root}/in/a.csv", f"file://{root}/in/day1/b.csv"]


def test_writes_input_and_output_manifests_under_the_start_hour(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    outputs = [f"file://{tmp_path}/out/a.csv.out"]  # day1/b.csv failed: not listed
    capture = DataCaptureConfig(destination_uri=f"file://{tmp_path}/capture/", generate_inference_id=True)
    written = write_capture_manifests(
        capture, job_name="job-1", started_at=STARTED, inputs=inputs, outputs=outputs, storage_for=storage_for
    )
    assert written == [
        f"file://{tmp_path}/capture/input/2022/08/30/00/job-1.manifest",
        f"file://{tmp_path}/capture/output/2022/08/30/00/job-1.manifest",
    ]
    input_manifest = tmp_path / "capture" / "input" / "2022" / "08" / "30" / "00" / "job-1.manifest"
    output_manifest = tmp_path / "capture" / "output" / "2022" / "08" / "30" / "00" / "job-1.manifest"
    assert json.loads(input_manifest.read_bytes()) == [{"prefix": f"file://{tmp_path}/in/"}, "a.csv", "day1/b.csv"]
    assert json.loads(output_manifest.read_bytes()) == [{"prefix": f"file://{tmp_path}/out/"}, "a.csv.out"]
    assert not [path for path in tmp_path.rglob("*") if TEMP_MARKER in path.name]


def test_input_manifest_reads_back_as_a_job_input(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    capture = DataCaptureConfig(destination_uri=str(tmp_path / "capture"))
    written = write_capture_manifests(capture, job_name="j", started_at=STARTED, inputs=inputs, outputs=[], storage_for=storage_for)
    listed = list(iter_inputs("ManifestFile", written[0], storage_for))
    assert [item.uri for item in listed] == inputs
    assert [item.relative for item in listed] == ["a.csv", "day1/b.csv"]


def test_no_outputs_gives_the_output_path_as_prefix(tmp_path: Path) -> None:
    capture = DataCaptureConfig(destination_uri=f"file://{tmp_path}/capture")
    written = write_capture_manifests(
        capture, job_name="j", started_at=STARTED, inputs=_inputs(tmp_path), outputs=[],
        storage_for=storage_for, output_path=f"file://{tmp_path}/out",
    )
    assert json.loads(Path(written[1].removeprefix("file://")).read_bytes()) == [{"prefix": f"file://{tmp_path}/out/"}]


def test_unwritable_destination_raises_storage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "capture").write_text("a file where a folder must go")
    capture = DataCaptureConfig(destination_uri=f"file://{tmp_path}/capture")
    with pytest.raises(StorageError) as caught:
        write_capture_manifests(capture, job_name="j", started_at=STARTED, inputs=_inputs(tmp_path), outputs=[], storage_for=storage_for)
    assert caught.value.uri.startswith(f"file://{tmp_path}/capture/input/2022/08/30/00/")


def test_manifests_on_s3(s3_server, s3_bucket: str) -> None:  # noqa: ANN001 - fixture
    capture = DataCaptureConfig(destination_uri=f"s3://{s3_bucket}/capture", kms_key_id=None)
    inputs = [f"s3://{s3_bucket}/in/a.csv", f"s3://{s3_bucket}/in/b.csv"]
    outputs = [f"s3://{s3_bucket}/out/a.csv.out", f"s3://{s3_bucket}/out/b.csv.out"]
    config = s3_server.s3_config()
    written = write_capture_manifests(
        capture, job_name="job-s3", started_at=STARTED, inputs=inputs, outputs=outputs,
        storage_for=lambda uri: storage_for(uri, s3_config=config),
    )
    client = s3_server.client()
    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["capture/input/2022/08/30/00/job-s3.manifest", "capture/output/2022/08/30/00/job-s3.manifest"]
    assert written == [f"s3://{s3_bucket}/{key}" for key in keys]
    body = client.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()
    assert json.loads(body) == [{"prefix": f"s3://{s3_bucket}/out/"}, "a.csv.out", "b.csv.out"]
