"""Records per second through RecordProcessor (filters + join), one core, against the targets.

    .venv/bin/python benchmarks/processing.py [--records N] [--batch N] [--repeat N]

Per record it does what the work-item loop does: `model_input` (InputFilter), then per request
`split_response` (a MultiRecord batch of `--batch` records, answered with one short line per
record by a trivial model stand-in), then `output_record` (join + OutputFilter). Reading, the
model and writing are not counted. The best of `--repeat` runs is reported.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Callable

import orjson

from conveyor.pipeline.join import RecordProcessor
from conveyor.sagemaker.jsonpath import parse_filter
from conveyor.sagemaker.transform_job import DataProcessing

CSV_TARGET = 150_000
JSONL_TARGET = 100_000


def csv_case(count: int) -> tuple[RecordProcessor, list[bytes]]:
    content_type = "text/csv"
    processing = DataProcessing(
        input_filter=parse_filter("$[1:]", content_type=content_type, field="InputFilter"),
        output_filter=parse_filter("$[0,-1]", content_type=content_type, field="OutputFilter"),
        join_source="Input",
    )
    rng = random.Random(7)
    rows = [
        b",".join([str(100000 + index).encode()] + [f"{rng.uniform(-100, 100):.4f}".encode() for _ in range(9)])
        for index in range(count)
    ]
    return RecordProcessor(processing, content_type=content_type, accept=content_type), rows


def jsonl_case(count: int) -> tuple[RecordProcessor, list[bytes]]:
    content_type = "application/jsonlines"
    processing = DataProcessing(
        input_filter=parse_filter("$.features", content_type=content_type, field="InputFilter"),
        output_filter=parse_filter("$['id','SageMakerOutput']", content_type=content_type, field="OutputFilter"),
        join_source="Input",
    )
    rng = random.Random(7)
    rows = []
    for index in range(count):
        record = {"id": 100000 + index, "features": [round(rng.uniform(-100, 100), 4) for _ in range(4)]}
        for key in range(8):
            record[f"k{key}"] = f"value-{rng.randrange(1000)}"
        rows.append(orjson.dumps(record))  # 10 keys
    return RecordProcessor(processing, content_type=content_type, accept=content_type), rows


def model(records: list[bytes]) -> bytes:
    """The stand-in model: one short line per record."""
    return b"0.73\n" * len(records)


def run(processor: RecordProcessor, rows: list[bytes], batch: int) -> float:
    source = "s3://bench/input"
    model_input = processor.model_input
    split_response = processor.split_response
    output_record = processor.output_record
    start = time.perf_counter()
    for first in range(0, len(rows), batch):
        chunk = rows[first : first + batch]
        sent = [model_input(row, record_number=first + offset + 1, source=source) for offset, row in enumerate(chunk)]
        outputs = split_response(model(sent), record_count=len(sent), first_record=first, source=source)
        for offset, (row, output) in enumerate(zip(chunk, outputs)):
            output_record(row, output, record_number=first + offset + 1, source=source)
    return len(rows) / (time.perf_counter() - start)


def best(case: Callable[[int], tuple[RecordProcessor, list[bytes]]], records: int, batch: int, repeat: int) -> float:
    processor, rows = case(records)
    return max(run(processor, rows, batch) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per request (MultiRecord)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [
        ("CSV, 10 columns: $[1:], join, $[0,-1]", best(csv_case, args.records, args.batch, args.repeat), CSV_TARGET),
        ("JSON Lines, 10 keys: $.features, join, $['id','SageMakerOutput']", best(jsonl_case, args.records, args.batch, args.repeat), JSONL_TARGET),
    ]
    print(f"{args.records:,} records, {args.batch} records per request, best of {args.repeat}\n")
    print(f"{'case':<68} {'records/s':>12} {'target':>10} {'ratio':>7}")
    for name, rate, target in rows:
        print(f"{name:<68} {rate:>12,.0f} {target:>10,} {rate / target:>6.2f}x")


if __name__ == "__main__":
    main()
