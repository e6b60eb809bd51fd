"""Nothing unbounded, against a real `conveyor server` on 127.0.0.1: error messages, logs,
connections."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from conveyor.service import LOG_GROUP
from tests.job_requests import job_request
from tests.server import ServerProcess, start_server, wait_for_status
from tests.test_server_api import assert_aws_error, create_model, signed_call, unique, write_inputs


def test_an_error_with_60000_broken_rules_lists_ten_and_counts_the_rest(conveyor_server: ServerProcess) -> None:
    body = orjson.dumps({f"Unknown{index}": 1 for index in range(60_000)})
    response = signed_call(conveyor_server, "SageMaker.ListModels", body)
    message = assert_aws_error(response, 400, "ValidationException")
    assert len(response.content) < 8192
    assert message.startswith("60000 validation errors detected: ")
    assert message.endswith("; and 59990 more")
    assert message.count("failed to satisfy constraint") == 10


def test_a_long_value_is_quoted_cut(conveyor_server: ServerProcess) -> None:
    response = signed_call(conveyor_server, "SageMaker.DescribeModel", orjson.dumps({"ModelName": "x" * 100_000}))
    message = assert_aws_error(response, 400, "ValidationException")
    assert f"Value '{'x' * 2048}... (100000 characters)' at 'modelName'" in message
    assert len(response.content) < 8192


# Logs: events cut at 256 KB, pages of at most 1 MB or 10,000 events, a per-job quota

LOUD = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    print("x" * 300_000, flush=True)
    for index in range(3000):
        print(f"line {index} " + "y" * 1000, flush=True)
    return body, accept
"""


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("quota-home"), "--log-quota-mb", "1")
    yield server
    server.stop()


def test_logs_are_cut_paged_and_held_to_the_quota(quota_server: ServerProcess, tmp_path: Path) -> None:
    sm, logs = quota_server.client(), quota_server.client("logs")
    name = unique("loud")
    model = create_model(sm, tmp_path, LOUD)
    sm.create_transform_job(**job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), str(tmp_path / "out")))
    assert wait_for_status(sm, name)["TransformJobStatus"] == "Completed"

    stream = f"{name}/instance-1"
    pages, token, messages = 0, None, []
    while True:
        arguments = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
        page = logs.get_log_events(**arguments, **({"nextToken": token} if token else {}))
        size = sum(len(event["message"].encode()) + 26 for event in page["events"])
        assert size <= 1024 * 1024 and len(page["events"]) <= 10_000
        if not page["events"]:
            break
        pages += 1
        messages += [event["message"] for event in page["events"]]
        token = page["nextForwardToken"]
    assert pages >= 2
    big = next(message for message in messages if message.startswith("[model stdout] xxx"))
    assert big.endswith(" [cut: 300015 bytes, over the event limit of 262144 bytes]")
    assert len(big.encode()) == 256 * 1024 - 26
    quota_line = "This job's log reached its quota of 1 MB (--log-quota-mb, CONVEYOR_LOG_QUOTA_MB): further lines are counted and dropped."
    assert messages.count(quota_line) == 1
    dropped = [message for message in messages if message.endswith("log lines were dropped past the log quota.")]
    assert len(dropped) == 1 and int(dropped[0].split()[0]) > 1000
    assert sum(len(message) for message in messages) < 1.5 * 1024 * 1024

    filtered = logs.filter_log_events(logGroupName=LOG_GROUP, logStreamNamePrefix=name)
    assert sum(len(event["message"].encode()) + 26 for event in filtered["events"]) <= 1024 * 1024
    assert filtered.get("nextToken")


# A client that hangs up mid-body


def test_a_client_hanging_up_mid_body_leaves_no_error_in_the_log(conveyor_server: ServerProcess) -> None:
    before = conveyor_server.log()
    with socket.create_connection(("127.0.0.1", conveyor_server.port), timeout=5) as connection:
        connection.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n"
            b"X-Amz-Target: SageMaker.ListModels\r\nContent-Length: 100000\r\n\r\n{\"MaxResults\": "
        )
    # The server still answers, and the hang-up left no traceback or error line behind.
    assert conveyor_server.client().list_models()["Models"] is not None
    added = conveyor_server.log()[len(before):]
    assert "Traceback" not in added and "ERROR" not in added, added
