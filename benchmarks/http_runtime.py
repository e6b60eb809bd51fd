"""Conveyor's HTTP runtime against a plain HTTP client loop, both calling the same echo server.

    .venv/bin/python benchmarks/http_runtime.py [--concurrency 4] [--payloads 40] [--records 20000] [--rounds 3]

Two workloads, each with the same concurrency on both sides:
- MultiRecord: 6 MB payloads, in MB/s (echoed back, so twice that crosses the socket);
- SingleRecord: small records (100 bytes), in requests/s.

"plain loop" is N threads, each with one kept-alive `http.client` connection, posting in a
loop: the least a client can do. "Conveyor" is the HttpServerRuntime driven as a job drives
it (`Invoker` + `invoke_in_order`: in-order results, retries, MaxConcurrentTransforms in
flight). "http.client" and "httpx" are the same path with a pool of `http.client` connections
or httpx's pooled client in place of the runtime's own connections: the measurement behind the
choice of client. "work item" runs a whole object
(Line split → 6 MB batches → invoke → assemble → local file). The target: Conveyor ≥ 80 % of
the plain loop on both workloads, in the same run. Rounds alternate the clients; the best
round of each counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Callable

from conveyor.pipeline.invoke import Invoker, invoke_in_order
from conveyor.pipeline.work_item import PipelineConfig, WorkItem, process_work_item
from conveyor.runtimes.base import InvocationError
from conveyor.runtimes.http_server import HttpServerRuntime
from conveyor.runtimes.process_server import free_port
from conveyor.storage import storage_for

MIB = 1 << 20
TARGET = 0.80


# -- the echo server (run in its own process: `http_runtime.py --serve PORT`) -------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /execution-parameters"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", port, limit=1 << 16)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the clients --------------------------------------------------------------------------------


def plain_loop(port: int, payloads: list[bytes], concurrency: int) -> float:
    """Seconds for `concurrency` threads, one kept-alive connection each, to post `payloads`."""
    shares = [payloads[index::concurrency] for index in range(concurrency)]

    def post_all(share: list[bytes]) -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=600)
        for payload in share:
            connection.request("POST", "/invocations", body=payload, headers={"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            if response.status != 200 or len(response.read()) != len(payload):
                raise RuntimeError("bad echo")
        connection.close()

    threads = [threading.Thread(target=post_all, args=(share,)) for share in shares]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


class HttpxRuntime(HttpServerRuntime):
    """The runtime with httpx's pooled client in place of http.client (for the comparison only)."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        import httpx

        super().__init__(base_url)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(base_url=base_url, limits=limits, timeout=600)

    def invoke_with_content_type(self, payload, *, content_type, accept, timeout):  # noqa: ANN001, ANN201
        headers = {"Content-Type": content_type} if content_type else {}
        response = self._client.post("/invocations", content=payload, headers=headers, timeout=timeout)
        if response.status_code != 200:
            raise InvocationError(f"status {response.status_code}", status=response.status_code)
        return response.content, response.headers.get("content-type")

    def close(self) -> None:
        self._client.close()
        super().close()


class HttpClientRuntime(HttpServerRuntime):
    """The runtime with pooled `http.client` connections in place of its own (for the comparison only)."""

    def __init__(self, base_url: str, port: int) -> None:
        super().__init__(base_url)
        self._port = port
        self._pool: list[HTTPConnection] = []

    def invoke_with_content_type(self, payload, *, content_type, accept, timeout):  # noqa: ANN001, ANN201
        try:
            connection = self._pool.pop()
        except IndexError:
            connection = HTTPConnection("127.0.0.1", self._port, timeout=timeout)
        connection.request("POST", "/invocations", body=payload, headers={"Content-Type": content_type})
        response = connection.getresponse()
        body = response.read()
        self._pool.append(connection)
        if response.status != 200:
            raise InvocationError(f"status {response.status}", status=response.status)
        return body, response.getheader("Content-Type")

    def close(self) -> None:
        for connection in self._pool:
            connection.close()
        super().close()


def through_runtime(runtime: HttpServerRuntime, payloads: list[bytes], concurrency: int) -> float:
    """Seconds for the job's invocation path (Invoker + invoke_in_order) to post `payloads`."""
    invoker = Invoker(runtime, content_type="application/octet-stream", accept=None, timeout_seconds=600, max_retries=3)
    began = time.perf_counter()
    for payload, response in invoke_in_order(payloads, invoker, max_concurrent=concurrency):
        if len(response) != len(payload):
            raise RuntimeError("bad echo")
    return time.perf_counter() - began


def work_item(runtime: HttpServerRuntime, source: Path, concurrency: int) -> float:
    """Seconds for one Line-split object, batched MultiRecord into 6 MB payloads, to the .out file."""
    config = PipelineConfig(
        split_type="Line", content_type="text/csv", batch_strategy="MultiRecord", max_payload_bytes=6 * MIB, max_concurrent=concurrency
    )
    output = source.with_suffix(".out")
    item = WorkItem(item_id=0, input_uri=str(source), output_uri=str(output), size=source.stat().st_size)
    began = time.perf_counter()
    process_work_item(item, config, runtime, storage_for, lambda progress: None)
    elapsed = time.perf_counter() - began
    if output.stat().st_size != source.stat().st_size:
        raise RuntimeError("bad echo")
    output.unlink()
    return elapsed


# -- the run ------------------------------------------------------------------------------------


def best_of(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each run's fastest time over `rounds`, the runs alternating within a round."""
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (MaxConcurrentTransforms)")
    parser.add_argument("--payloads", type=int, default=40, help="6 MB payloads per MultiRecord round")
    parser.add_argument("--records", type=int, default=20000, help="small records per SingleRecord round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    runtime = HttpServerRuntime(f"http://127.0.0.1:{port}", startup_timeout=30)
    runtime.start()
    httpx_runtime = HttpxRuntime(f"http://127.0.0.1:{port}", args.concurrency)
    httpx_runtime.start()
    http_client_runtime = HttpClientRuntime(f"http://127.0.0.1:{port}", port)
    http_client_runtime.start()
    workdir = tempfile.TemporaryDirectory(prefix="conveyor-bench-")
    try:
        big = os.urandom(6 * MIB)
        large = [big] * args.payloads
        small = [b"%099d" % index for index in range(args.records)]
        line = b"x" * 99 + b"\n"
        source = Path(workdir.name) / "lines.csv"
        source.write_bytes(line * (len(large) * 6 * MIB // len(line)))
        c = args.concurrency

        large_runs = best_of(args.rounds, {
            "plain loop": lambda: plain_loop(port, large, c),
            "Conveyor": lambda: through_runtime(runtime, large, c),
            "http.client": lambda: through_runtime(http_client_runtime, large, c),
            "httpx": lambda: through_runtime(httpx_runtime, large, c),
            "work item": lambda: work_item(runtime, source, c),
        })
        small_runs = best_of(args.rounds, {
            "plain loop": lambda: plain_loop(port, small, c),
            "Conveyor": lambda: through_runtime(runtime, small, c),
            "http.client": lambda: through_runtime(http_client_runtime, small, c),
            "httpx": lambda: through_runtime(httpx_runtime, small, c),
        })
    finally:
        http_client_runtime.close()
        httpx_runtime.close()
        runtime.close()
        server.kill()
        server.wait()
        workdir.cleanup()

    megabytes = len(large) * 6
    print(f"\nHTTP runtime vs a plain loop, {c} in flight, echo server on 127.0.0.1 (best of {args.rounds})\n")
    print(f"{'workload':<34} {'client':<12} {'rate':<18} {'vs plain':>9}")
    ok = True
    for title, runs, unit, amount in (
        (f"MultiRecord, {len(large)} × 6 MB", large_runs, "MB/s", megabytes),
        (f"SingleRecord, {len(small):,} × 100 B", small_runs, "requests/s", len(small)),
    ):
        plain = amount / runs["plain loop"]
        for name, seconds in runs.items():
            rate = amount / seconds
            print(f"{title:<34} {name:<12} {rate:>7,.0f} {unit:<10} {rate / plain:>8.0%}")
            title = ""
        ratio = (amount / runs["Conveyor"]) / plain
        ok = ok and ratio >= TARGET
    print(f"\ntarget: Conveyor ≥ {TARGET:.0%} of the plain loop on both workloads: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
