"""Speed of splitting and batching: records/s and MB/s per SplitType and BatchStrategy.

    .venv/bin/python benchmarks/split_speed.py [--mib 128] [--line-bytes 100] [--payload-mib 6]

Input is generated in memory and fed as 1 MiB chunks (as iter_chunks reads them), so the numbers
are those of the splitter and packer alone; the `+ iter_chunks` rows add reading a BytesIO.
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import time
from typing import Callable, Iterable

from conveyor.pipeline.batch import iter_payloads
from conveyor.pipeline.decompress import iter_chunks
from conveyor.pipeline.split import RECORDIO_MAGIC, iter_records, masked_crc32c

CHUNK = 1 << 20


def csv_lines(total: int, line_bytes: int, *, crlf: bool = False, empty_every: int = 0) -> bytes:
    lines = []
    size = number = 0
    ending = b"\r\n" if crlf else b"\n"
    while size < total:
        number += 1
        head = f"{number},{number % 97 / 7:.5f},".encode()
        line = head + b"1.25," * ((line_bytes - len(head) - len(ending)) // 5)
        line = line[: line_bytes - len(ending)] + ending
        lines.append(line)
        size += len(line)
        if empty_every and number % empty_every == 0:
            lines.append(ending)
    return b"".join(lines)


def tfrecords(total: int, record_bytes: int) -> bytes:
    data = b"r" * record_bytes
    length = struct.pack("<Q", len(data))
    frame = length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))
    return frame * (total // len(frame))


def recordio(total: int, record_bytes: int) -> bytes:
    data = b"r" * record_bytes
    frame = struct.pack("<II", RECORDIO_MAGIC, len(data)) + data + b"\0" * (-len(data) % 4)
    return frame * (total // len(frame))


def chunked(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def measure(name: str, size: int, run: Callable[[], Iterable]) -> None:
    best = float("inf")
    records = payloads = 0
    for _ in range(3):
        started = time.perf_counter()
        records = payloads = 0
        for item in run():
            payloads += 1
            records += getattr(item, "record_count", 1)
        best = min(best, time.perf_counter() - started)
    print(f"| {name:<46} | {payloads:>9} | {records / best:>13,.0f} | {size / best / 1e6:>8,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="input size per case (MiB)")
    parser.add_argument("--line-bytes", type=int, default=100)
    parser.add_argument("--payload-mib", type=int, default=6, help="MaxPayloadInMB")
    args = parser.parse_args()
    total = args.mib << 20
    limit = args.payload_mib << 20

    print(f"| {'case':<46} | {'payloads':>9} | {'records/s':>13} | {'MB/s':>8} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 15}|{'-' * 10}|")

    def payloads(data: bytes, split_type: str, strategy: str) -> Callable[[], Iterable]:
        chunks = chunked(data)
        return lambda: iter_payloads(chunks, split_type=split_type, strategy=strategy, max_payload_bytes=limit, source="bench")

    lines = csv_lines(total, args.line_bytes)
    measure(f"Line MultiRecord ({args.line_bytes} B lines)", len(lines), payloads(lines, "Line", "MultiRecord"))
    measure(
        "Line MultiRecord + iter_chunks(BytesIO)",
        len(lines),
        lambda: iter_payloads(
            iter_chunks(io.BytesIO(lines)), split_type="Line", strategy="MultiRecord", max_payload_bytes=limit, source="bench"
        ),
    )
    crlf = csv_lines(total, args.line_bytes, crlf=True)
    measure("Line MultiRecord, CRLF", len(crlf), payloads(crlf, "Line", "MultiRecord"))
    sparse = csv_lines(total, args.line_bytes, empty_every=100_000)
    measure("Line MultiRecord, an empty line per 100k", len(sparse), payloads(sparse, "Line", "MultiRecord"))
    dense = csv_lines(total, args.line_bytes, empty_every=10)
    measure("Line MultiRecord, an empty line per 10", len(dense), payloads(dense, "Line", "MultiRecord"))
    measure("Line SingleRecord", len(lines), payloads(lines, "Line", "SingleRecord"))
    line_chunks = chunked(lines)
    measure("iter_records(Line)", len(lines), lambda: iter_records(line_chunks, "Line", source="bench"))

    for name, build in (("TFRecord", tfrecords), ("RecordIO", recordio)):
        for record_bytes in (100, 10_000):
            data = build(total, record_bytes)
            for strategy in ("MultiRecord", "SingleRecord"):
                measure(f"{name} {strategy} ({record_bytes} B records)", len(data), payloads(data, name, strategy))

    compressed = gzip.compress(lines, compresslevel=6)
    measure("iter_chunks Gzip (CSV, output MB/s)", len(lines), lambda: iter_chunks(io.BytesIO(compressed), compression="Gzip"))


if __name__ == "__main__":
    main()
