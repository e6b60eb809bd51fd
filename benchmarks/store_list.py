"""ListTransformJobs over a large store: milliseconds per page, for each filter and sort.

    .venv/bin/python benchmarks/store_list.py [--jobs 10000] [--repeat 50]

Builds a store of N jobs (one executemany), then times pages of the listings the API serves:
first pages, a deep page reached by NextToken, and filters that the indexes do and do not
serve. A page should answer in well under 50 ms; the script exits 1 if the median of any is over.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conveyor.store import COMPLETED, FAILED, IN_PROGRESS, STOPPED, Store

BUDGET_MS = 50.0
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def build(store: Store, count: int) -> None:
    """N jobs over 30 days: mostly finished, some running, names with a few recurring words."""
    rng = random.Random(7)
    words = ["daily-scoring", "weekly-report", "adhoc", "churn-model", "embeddings"]
    statuses = [COMPLETED] * 80 + [FAILED] * 10 + [STOPPED] * 5 + [IN_PROGRESS] * 5
    rows = []
    for index in range(count):
        created = T0.timestamp() + index * (30 * 86400 / count)
        status = rng.choice(statuses)
        ended = None if status == IN_PROGRESS else created + rng.uniform(60, 3600)
        name = f"{rng.choice(words)}-{index:06d}"
        rows.append((
            name, f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{name}", "model",
            '{"TransformJobName": "%s"}' % name, status,
            "ClientError: 400" if status == FAILED else None,
            created, ended or created, ended,
        ))
    with store.database.transaction() as connection:
        connection.executemany(
            "INSERT INTO transform_jobs (name, arn, model_name, request, status, failure_reason,"
            " creation_time, last_modified_time, transform_end_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    store.database.execute("ANALYZE")


def deep_token(store: Store, pages: int, **arguments) -> str | None:
    token = None
    for _ in range(pages):
        token = store.jobs.list(next_token=token, **arguments).next_token
    return token


def cases(store: Store) -> list[tuple[str, dict]]:
    middle = T0 + timedelta(days=15)
    return [
        ("default (CreationTime desc, 10)", {}),
        ("MaxResults=100", {"max_results": 100}),
        ("page 50 by NextToken (100/page)", {"max_results": 100, "next_token": deep_token(store, 50, max_results=100)}),
        ("SortBy=Name asc", {"sort_by": "Name", "sort_order": "Ascending", "max_results": 100}),
        ("SortBy=Status desc", {"sort_by": "Status", "max_results": 100}),
        ("StatusEquals=InProgress", {"status_equals": IN_PROGRESS, "max_results": 100}),
        ("StatusEquals=Failed, SortBy=Name", {"status_equals": FAILED, "sort_by": "Name", "max_results": 100}),
        ("NameContains=SCORING (common)", {"name_contains": "SCORING", "max_results": 100}),
        ("NameContains=009999 (rare: full scan)", {"name_contains": "009999", "max_results": 100}),
        ("CreationTime window (1 day)",
         {"creation_time_after": middle, "creation_time_before": middle + timedelta(days=1)}),
        ("LastModifiedTimeAfter (recent)", {"last_modified_time_after": T0 + timedelta(days=29, hours=23)}),
        ("no match (full scan)", {"name_contains": "nothing-matches"}),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, Store(Path(directory) / "conveyor.db") as store:
        started = time.perf_counter()
        build(store, options.jobs)
        print(f"built {options.jobs:,} jobs in {(time.perf_counter() - started) * 1000:.0f} ms\n")
        print(f"{'listing':<40} {'rows':>5} {'median ms':>10} {'p95 ms':>8}")
        slow = []
        for label, arguments in cases(store):
            timings = []
            for _ in range(options.repeat):
                begin = time.perf_counter()
                page = store.jobs.list(**arguments)
                timings.append((time.perf_counter() - begin) * 1000)
            median = statistics.median(timings)
            p95 = sorted(timings)[int(len(timings) * 0.95) - 1]
            print(f"{label:<40} {len(page.items):>5} {median:>10.2f} {p95:>8.2f}")
            if median > BUDGET_MS:
                slow.append(label)
    if slow:
        print(f"\nover {BUDGET_MS:.0f} ms: {', '.join(slow)}")
        return 1
    print(f"\nevery listing under {BUDGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
