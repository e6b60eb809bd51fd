"""S3 storage throughput against a plain boto3 streaming GET, on a local moto server.

Uploads one generated line-delimited object, then measures, on the same object:
  boto3 GET       get_object()["Body"].iter_chunks(1 MiB): what a plain reader gets
  boto3 upload    upload_fileobj from memory (s3transfer, multipart): what a plain writer gets
  open_read       S3Storage.open_read, read(1 MiB) to the end (read-ahead thread)
  open_write      S3Storage.open_write of the same bytes from memory, 1 MiB writes
  identity        open_read + open_write of the same bytes to a new key (multipart upload),
                  i.e. the storage half of a transform whose model returns its input
and prints MB/s for each, identity / boto3 GET (target ≥ 0.8), and identity / the store's
ceiling for a read plus a write of the same bytes (1 / (1/GET + 1/upload)): moto is one Python
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
from tests.s3_server import CREDENTIALS, REGION, start_moto_server, stop_moto_server  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
READ_SIZE = MiB  # what the pipeline's iter_chunks asks for


def generated_blocks(total: int, block_size: int = 8 * MiB):
    """CSV-like lines, numbered so the data does not compress or repeat exactly."""
    template = b"%012d,0.1234,5.6789,abcdefghij,0.0001,9.8765,klmnopqrst,42\n"
    number = 0
    produced = 0
    while produced < total:
        lines = []
        size = 0
        while size < block_size:
            line = template % number
            lines.append(line)
            size += len(line)
            number += 1
        block = b"".join(lines)[: min(block_size, total - produced)]
        produced += len(block)
        yield block


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


def best_rate(run: Callable[[], int], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        count = run()
        best = max(best, count / MB / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=None, help="object size in MB (default 1000, or 200 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 200 MB object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--strategy", action="append", choices=["stream", "ranges"], help="read strategies to measure (default stream)")
    parser.add_argument("--endpoint-url", help="measure against this S3 endpoint instead of a local moto server")
    parser.add_argument("--bucket", default="conveyor-benchmark")
    arguments = parser.parse_args()
    size = (arguments.size_mb or (200 if arguments.quick else 1000)) * MB
    strategies = arguments.strategy or ["stream"]

    server = None
    if arguments.endpoint_url:
        endpoint_url = arguments.endpoint_url
    else:
        os.environ.update(CREDENTIALS)
        server = start_moto_server()
        endpoint_url = server.endpoint_url
    try:
        import boto3

        storage = S3Storage(S3Config(endpoint_url=endpoint_url, region=REGION))
        client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
        if server is not None:
            client.create_bucket(Bucket=arguments.bucket)
        uri = f"s3://{arguments.bucket}/benchmark/input.csv"
        data = b"".join(generated_blocks(size))
        storage_write(storage, uri, data)

        baseline = best_rate(lambda: boto3_get(client, arguments.bucket, "benchmark/input.csv"), arguments.repeat)
        upload_rate = best_rate(lambda: boto3_upload(client, arguments.bucket, "benchmark/boto3-upload", data), arguments.repeat)
        rows: list[tuple[str, float]] = [("boto3 GET iter_chunks(1 MiB)", baseline), ("boto3 upload_fileobj (s3transfer)", upload_rate)]
        rows.append(("open_write", best_rate(lambda: storage_write(storage, f"s3://{arguments.bucket}/benchmark/written", data), arguments.repeat)))
        del data
        identity_rates = {}
        for strategy in strategies:
            reader = S3Storage(S3Config(endpoint_url=endpoint_url, region=REGION, read_strategy=strategy))
            rows.append((f"open_read [{strategy}]", best_rate(lambda: storage_read(reader, uri), arguments.repeat)))
            output = f"s3://{arguments.bucket}/benchmark/output-{strategy}.csv.out"
            identity_rates[strategy] = best_rate(lambda: identity(reader, uri, output), arguments.repeat)
            rows.append((f"identity: open_read [{strategy}] + open_write", identity_rates[strategy]))
    finally:
        if server is not None:
            stop_moto_server(server.process)

    print(f"\nobject: {size / MB:.0f} MB, endpoint: {'moto_server (local)' if server else endpoint_url}, best of {arguments.repeat}\n")
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  {'MB/s':>8}")
    print(f"{'-' * width}  {'-' * 8}")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>8.1f}")
    ceiling = 1 / (1 / baseline + 1 / upload_rate)
    print(f"\nceiling for read + write of the same bytes on this store: 1 / (1/GET + 1/upload) = {ceiling:.1f} MB/s")
    for strategy, rate in identity_rates.items():
        ratio = rate / baseline
        print(f"identity [{strategy}] / boto3 GET = {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'not met'})")
        print(f"identity [{strategy}] / ceiling   = {rate / ceiling:.2f}")


if __name__ == "__main__":
    main()
