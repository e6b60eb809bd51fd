"""API load: keep-alive connections offering a fixed rate of signed Describe and List calls to a
real `conveyor server` whose store holds 10,000 jobs; then ListTransformJobs pages one at a time.

    .venv/bin/python benchmarks/api_load.py [--jobs 10000] [--connections 50] [--rate 200] [--duration 30]

The load generator runs in its own process and speaks raw HTTP/1.1 (asyncio streams), with every
request signed (botocore's SigV4Auth) before the clock starts, so that the client's own cost
stays small beside the server's on a small machine. It is open-loop: request i of the run is due
at i / rate seconds, spread round-robin over the connections; a connection whose previous answer
is late sends as soon as it can, and latency is counted from when the request was *due*, so
queueing shows in the figures instead of slowing the offered rate (no coordinated omission).
The figures: count, errors, achieved rate, p50/p95/p99/max ms, overall and per operation. Then
the ListTransformJobs page latency over the store, per listing, on one connection.

Exits 1 when any request fails, the load p99 is 50 ms or more, or a listing's p99 is 50 ms or more.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import botocore.credentials
import psutil
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from conveyor.store import COMPLETED, Store

BUDGET_MS = 50.0
ACCESS_KEY = "AKIABENCHMARKLOAD000"
SECRET_KEY = "benchmark-secret-key-not-for-production"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
WORDS = ("daily-scoring", "weekly-report", "adhoc", "churn-model", "embeddings")
ACCOUNT = "000000000000"


# The store


def job_request(name: str) -> dict[str, Any]:
    """A full CreateTransformJob request, as a client would have sent it."""
    return {
        "TransformJobName": name,
        "ModelName": "bench-model",
        "MaxConcurrentTransforms": 2,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://bench-bucket/input/{name}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": f"s3://bench-bucket/output/{name}", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }


def seed(home: Path, count: int) -> list[str]:
    """`count` Completed jobs over 30 days, written in one transaction; returns their names."""
    rng = random.Random(7)
    names, rows = [], []
    with Store(home / "conveyor.db") as store:
        store.models.create(
            "bench-model", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/bench-model",
            {"ModelName": "bench-model", "PrimaryContainer": {"Image": "conveyor:python"}}, T0,
        )
        for index in range(count):
            name = f"{rng.choice(WORDS)}-{index:06d}"
            created = T0.timestamp() + index * (30 * 86400 / count)
            started = created + rng.uniform(1, 30)
            ended = started + rng.uniform(60, 3600)
            names.append(name)
            rows.append((
                name, f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:transform-job/{name}", "bench-model",
                json.dumps(job_request(name)), COMPLETED, created, ended, started, ended,
                json.dumps({"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord"}),
            ))
        with store.database.transaction() as connection:
            connection.executemany(
                "INSERT INTO transform_jobs (name, arn, model_name, request, status, creation_time,"
                " last_modified_time, transform_start_time, transform_end_time, execution_parameters)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        store.database.execute("ANALYZE")
    return names


# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, port: int) -> subprocess.Popen:
    environment = {
        **os.environ,
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_CAPACITY": "2",
        "CONVEYOR_ACCESS_KEY_ID": ACCESS_KEY,
        "CONVEYOR_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "server", "--port", str(port)],  # home from CONVEYOR_HOME
        env=environment, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"conveyor server exited:\n{(home / 'server.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("conveyor server did not start in 30 s")


# Signed requests


def signed(port: int, target: str, body: dict[str, Any]) -> bytes:
    """A whole HTTP/1.1 request, signed now, ready to write to a keep-alive connection."""
    payload = json.dumps(body).encode()
    url = f"http://127.0.0.1:{port}/"
    request = AWSRequest(method="POST", url=url, data=payload, headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), "sagemaker", "us-east-1").add_auth(request)
    head = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(payload)}"]
    head += [f"{name}: {value}" for name, value in request.headers.items() if name.lower() not in ("host", "content-length")]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def call(connection: http.client.HTTPConnection, port: int, target: str, body: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(body).encode()
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=payload, headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), "sagemaker", "us-east-1").add_auth(request)
    connection.request("POST", "/", body=payload, headers=dict(request.headers.items()))
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{target} {body}: HTTP {response.status}: {data[:300]!r}")
    return json.loads(data)


LIST_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("default (CreationTime desc, 10)", {}),
    ("MaxResults=100", {"MaxResults": 100}),
    ("SortBy=Name asc, 100", {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 100}),
    ("SortBy=Status desc, 100", {"SortBy": "Status", "MaxResults": 100}),
    ("StatusEquals=Completed, SortBy=Name", {"StatusEquals": "Completed", "SortBy": "Name", "MaxResults": 100}),
    ("NameContains=scoring, 100", {"NameContains": "scoring", "MaxResults": 100}),
    ("NameContains=009999 (full scan)", {"NameContains": "009999"}),
    ("CreationTime window (1 day)", {"CreationTimeAfter": int((T0 + timedelta(days=15)).timestamp()), "CreationTimeBefore": int((T0 + timedelta(days=16)).timestamp()), "MaxResults": 100}),
    ("LastModifiedTimeAfter (recent)", {"LastModifiedTimeAfter": int((T0 + timedelta(days=29, hours=23)).timestamp()), "MaxResults": 100}),
]


def deep_tokens(port: int, pages: int) -> list[str]:
    """NextTokens of pages 1..`pages` of MaxResults=100, newest first."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    tokens, token = [], None
    for _ in range(pages):
        page = call(connection, port, "SageMaker.ListTransformJobs", {"MaxResults": 100, **({"NextToken": token} if token else {})})
        token = page["NextToken"]
        tokens.append(token)
    connection.close()
    return tokens


# The load generator (its own process)


@dataclass(frozen=True)
class Plan:
    port: int
    connections: int
    rate: float
    duration: float
    names: list[str]
    tokens: list[str]
    seed: int = 11


def plan_requests(plan: Plan) -> list[tuple[str, bytes]]:
    """(operation, signed request bytes), half DescribeTransformJob of a random job, half
    ListTransformJobs in the mix of LIST_VARIANTS and NextToken pages."""
    rng = random.Random(plan.seed)
    total = int(plan.rate * plan.duration)
    requests = []
    for _ in range(total):
        if rng.random() < 0.5:
            requests.append(("Describe", signed(plan.port, "SageMaker.DescribeTransformJob", {"TransformJobName": rng.choice(plan.names)})))
        elif rng.random() < 0.2:
            requests.append(("List", signed(plan.port, "SageMaker.ListTransformJobs", {"MaxResults": 100, "NextToken": rng.choice(plan.tokens)})))
        else:
            requests.append(("List", signed(plan.port, "SageMaker.ListTransformJobs", rng.choice(LIST_VARIANTS)[1])))
    return requests


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _connection(plan: Plan, index: int, requests: list[tuple[str, bytes]], start: float, results: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plan.port)
    loop = asyncio.get_running_loop()
    for position in range(index, len(requests), plan.connections):
        due = start + position / plan.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        operation, data = requests[position]
        sent = loop.time()
        try:
            writer.write(data)
            await writer.drain()
            status, close = await _read_response(reader)
            error = None if status == 200 else f"HTTP {status}"
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status, close, error = 0, True, f"{type(exc).__name__}: {exc}"
        done = loop.time()
        results.append((operation, status, error, (done - due) * 1000, (done - sent) * 1000))
        if close:
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", plan.port)
    writer.close()


async def _generate(plan: Plan, requests: list[tuple[str, bytes]]) -> list:
    results: list = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5  # every connection opened before the first request is due
    await asyncio.gather(*(_connection(plan, index, requests, start, results) for index in range(plan.connections)))
    results.append(("elapsed", loop.time() - start))
    return results


def load_process(plan: Plan, out: Any) -> None:
    requests = plan_requests(plan)
    before = os.times()
    results = asyncio.run(_generate(plan, requests))
    after = os.times()
    results.append(("cpu", (after.user - before.user) + (after.system - before.system)))
    out.send(results)
    out.close()


# Figures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


def row(label: str, latencies: list[float], errors: int | str = "") -> str:
    return (
        f"{label:<40} {len(latencies):>6} {errors!s:>6} {percentile(latencies, 0.50):>8.2f} "
        f"{percentile(latencies, 0.95):>8.2f} {percentile(latencies, 0.99):>8.2f} {max(latencies):>8.2f}"
    )


HEADER = f"{'':<40} {'count':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"


def list_pages(port: int, tokens: list[str], repeat: int) -> list[tuple[str, list[float]]]:
    """Each listing `repeat` times on one keep-alive connection, signed before timing."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.connect()
    cases = LIST_VARIANTS + [("page 50 by NextToken (100/page)", {"MaxResults": 100, "NextToken": tokens[-1]})]
    figures = []
    for label, body in cases:
        timings = []
        for _ in range(repeat):
            data = signed(port, "SageMaker.ListTransformJobs", body)
            begin = time.perf_counter()
            connection.sock.sendall(data)
            response = http.client.HTTPResponse(connection.sock)
            response.begin()
            payload = response.read()
            timings.append((time.perf_counter() - begin) * 1000)
            if response.status != 200:
                raise SystemExit(f"{label}: HTTP {response.status}: {payload[:300]!r}")
        figures.append((label, timings))
    connection.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the store (default 10000)")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second offered in total (default 200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--repeat", type=int, default=50, help="times each listing is timed after the load (default 50)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="conveyor-api-load-") as directory:
        home = Path(directory)
        began = time.perf_counter()
        names = seed(home, options.jobs)
        print(f"store: {options.jobs:,} Completed jobs written in {(time.perf_counter() - began):.1f} s")
        port = free_port()
        server = start_server(home, port)
        try:
            tokens = deep_tokens(port, min(50, max(1, options.jobs // 100 - 1)))
            print(f"server: pid {server.pid} on 127.0.0.1:{port}; load generator: its own process, "
                  f"{options.connections} connections, {options.rate:g} req/s offered for {options.duration:g} s "
                  f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f})\n")
            receiving, sending = multiprocessing.Pipe(duplex=False)
            times = psutil.Process(server.pid).cpu_times()
            server_cpu_before = times.user + times.system
            plan = Plan(port, options.connections, options.rate, options.duration, names, tokens)
            generator = multiprocessing.get_context("spawn").Process(target=load_process, args=(plan, sending), name="load-generator")
            server_process = psutil.Process(server.pid)
            generator.start()
            results = receiving.recv()
            server_cpu = server_process.cpu_times()
            generator.join()
            generator_cpu = results.pop()[1]
            elapsed = results.pop()[1]
            errors = [r for r in results if r[2]]
            due = [r[3] for r in results]
            service = [r[4] for r in results]
            print(f"load: {len(results)} requests in {elapsed:.1f} s = {len(results) / elapsed:.1f} req/s achieved, {len(errors)} errors")
            server_seconds = server_cpu.user + server_cpu.system - server_cpu_before
            print(f"CPU: server {server_seconds / len(results) * 1000:.2f} ms per request ({server_seconds / elapsed:.0%} of a core), "
                  f"load generator {generator_cpu / len(results) * 1000:.2f} ms per request ({generator_cpu / elapsed:.0%} of a core); "
                  f"load average after {os.getloadavg()[0]:.2f}")
            for error in errors[:5]:
                print(f"  error: {error[0]} {error[2]}")
            print(HEADER)
            print(row("all, from when due", due, len(errors)))
            print(row("all, from when sent", service))
            for operation in ("Describe", "List"):
                print(row(f"{operation}, from when due", [r[3] for r in results if r[0] == operation], sum(1 for r in errors if r[0] == operation)))
            load_p99 = percentile(due, 0.99)

            print(f"\nListTransformJobs pages over {options.jobs:,} jobs, one connection, {options.repeat} each:")
            print(HEADER)
            slow = []
            for label, timings in list_pages(port, tokens, options.repeat):
                print(row(label, timings, 0))
                if percentile(timings, 0.99) >= BUDGET_MS:
                    slow.append(label)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    verdict = []
    if errors:
        verdict.append(f"{len(errors)} errors")
    if load_p99 >= BUDGET_MS:
        verdict.append(f"load p99 {load_p99:.1f} ms ≥ {BUDGET_MS:.0f} ms")
    if slow:
        verdict.append(f"listings with p99 ≥ {BUDGET_MS:.0f} ms: {', '.join(slow)}")
    print("\n" + ("FAIL: " + "; ".join(verdict) if verdict else f"OK: no errors, load p99 {load_p99:.1f} ms, every listing's p99 under {BUDGET_MS:.0f} ms"))
    return 1 if verdict else 0


if __name__ == "__main__":
    sys.exit(main())
