"""S3 storage throughput against a plain boto3 streaming GET, on a local moto server.

Uploads one generated line-delimited object, then measures, on the same object:
  boto3 GET       get_object()["Body"].iter_chunks(1 MiB): what a plain reader gets
  boto3 upload    upload_fileobj from memory (s3transfer, multipart): what a plain writer gets
  open_read       S3Storage.open_read, read(1 MiB) to the end (read-ahead thread)
  open_write      S3Storage.open_write of the same bytes from memory, 1 MiB writes
  identity        open_read + open_write of the same bytes to a new key (multipart upload),
                  i.e. the storage half of a transform whose model returns its input
and prints MB/s for each, identity / boto3 GET (target ≥ 0.8), and identity / the store's
ceiling for a read plus a write of the same bytes (1 / (1/GET + 1/best write)): moto is one Python
process, so the bytes it takes in cost it about ten times what the bytes it sends do, and
reading and writing share it. Each run is repeated and the best is kept. `--strategy ranges`
adds the ranged-GET strategy (slow on moto, which copies the whole object for each ranged GET;
it is the one to use on real S3).

    .venv/bin/python benchmarks/s3.py            # 1 GB
    .venv/bin/python benchmarks/s3.py --quick    # 200 MB
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conveyor.storage.s3 import S3Config, S3Storage  # noqa: E402
from tests.numbered_lines import numbered_lines  # noqa: E402
from tests.s3_server import CREDENTIALS, REGION, start_moto_server, stop_moto_server  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
READ_SIZE = MiB  # what the pipeline's iter_chunks asks for


def storage_write(storage: S3Storage, uri: str, data: bytes) -> int:
    with storage.open_write(uri) as writer, memoryview(data) as view:
        for start in range(0, len(data), READ_SIZE):
            writer.write(view[start : start + READ_SIZE])
    return len(data)


def boto3_upload(client, bucket: str, key: str, data: bytes) -> int:
    client.upload_fileobj(io.BytesIO(data), bucket, key)
    return len(data)


def boto3_get(client, bucket: str, key: str) -> int:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    count = 0
    for chunk in body.iter_chunks(chunk_size=READ_SIZE):
        count += len(chunk)
    return count


def storage_read(storage: S3Storage, uri: str) -> int:
    count = 0
    with storage.open_read(uri) as stream:
        while chunk := stream.read(READ_SIZE):
            count += len(chunk)
    return count


def identity(storage: S3Storage, uri: str, output_uri: str) -> int:
    count = 0
    with storage.open_read(uri) as stream, storage.open_write(output_uri) as writer:
        while chunk := stream.read(READ_SIZE):
            writer.write(chunk)
            count += len(chunk)
    return count


def best_rate(run: Callable[[], int], repeat: int) -> tuple[float, float]:
    """The best MB/s over `repeat` runs, and the CPU seconds this process spent on that run."""
    best = (0.0, 0.0)
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        count = run()
        rate = count / MB / (time.perf_counter() - started)
        if rate > best[0]:
            best = (rate, time.process_time() - cpu_started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=None, help="object size in MB (default 1000, 200 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 200 MB object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--strategy", action="append", choices=["stream", "ranges"], help="read strategies (default stream)")
    parser.add_argument("--endpoint-url", help="measure against this S3 endpoint (and existing --bucket) instead of moto")
    parser.add_argument("--bucket", default="conveyor-benchmark")
    arguments = parser.parse_args()
    size = (arguments.size_mb or (200 if arguments.quick else 1000)) * MB
    strategies = arguments.strategy or ["stream"]
    bucket, repeat = arguments.bucket, arguments.repeat

    server = None
    if arguments.endpoint_url:
        endpoint_url = arguments.endpoint_url
    else:
        os.environ.update(CREDENTIALS)
        server = start_moto_server()
        endpoint_url = server.endpoint_url
    rows: dict[str, tuple[float, float]] = {}
    try:
        import boto3

        storage = S3Storage(S3Config(endpoint_url=endpoint_url, region=REGION))
        client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
        if server is not None:
            client.create_bucket(Bucket=bucket)
        uri = f"s3://{bucket}/benchmark/input.csv"
        data = b"".join(numbered_lines(size, 8 * MiB))
        storage_write(storage, uri, data)

        rows["boto3 GET iter_chunks(1 MiB)"] = best_rate(lambda: boto3_get(client, bucket, "benchmark/input.csv"), repeat)
        rows["boto3 upload_fileobj (s3transfer)"] = best_rate(
            lambda: boto3_upload(client, bucket, "benchmark/boto3-upload", data), repeat
        )
        rows["open_write"] = best_rate(lambda: storage_write(storage, f"s3://{bucket}/benchmark/written", data), repeat)
        del data
        for strategy in strategies:
            reader = S3Storage(S3Config(endpoint_url=endpoint_url, region=REGION, read_strategy=strategy))
            reader.client  # noqa: B018 - built before the clock starts, as `storage` and `client` were
            output = f"s3://{bucket}/benchmark/output-{strategy}.csv.out"
            rows[f"open_read [{strategy}]"] = best_rate(lambda: storage_read(reader, uri), repeat)
            rows[f"identity [{strategy}]: open_read + open_write"] = best_rate(lambda: identity(reader, uri, output), repeat)
    finally:
        if server is not None:
            stop_moto_server(server.process)

    where = "moto_server (local)" if server else endpoint_url
    print(f"\nobject: {size / MB:.0f} MB, endpoint: {where}, best of {repeat}\n")
    width = max(len(name) for name in rows)
    print(f"{'measurement':<{width}}  {'MB/s':>8}  {'CPU s':>6}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 6}")
    for name, (rate, cpu_seconds) in rows.items():
        print(f"{name:<{width}}  {rate:>8.1f}  {cpu_seconds:>6.2f}")
    get_rate = rows["boto3 GET iter_chunks(1 MiB)"][0]
    upload_rate = max(rows["boto3 upload_fileobj (s3transfer)"][0], rows["open_write"][0])
    ceiling = 1 / (1 / get_rate + 1 / upload_rate)
    print("\n(CPU s: this process, all threads; the store's own CPU is not counted)")
    print(f"ceiling for a read plus a write of the same bytes here: 1 / (1/GET + 1/best write) = {ceiling:.1f} MB/s")
    for strategy in strategies:
        rate = rows[f"identity [{strategy}]: open_read + open_write"][0]
        met = "met" if rate / get_rate >= 0.8 else "not met"
        print(f"identity [{strategy}] / boto3 GET = {rate / get_rate:.2f} (target >= 0.80: {met})")
        print(f"identity [{strategy}] / ceiling   = {rate / ceiling:.2f}")
        print(f"open_read [{strategy}] / boto3 GET = {rows[f'open_read [{strategy}]'][0] / get_rate:.2f}")


if __name__ == "__main__":
    main()
