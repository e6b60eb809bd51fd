"""Nothing unbounded, against a real `conveyor server` on 127.0.0.1: error messages, logs,
connections."""

from __future__ import annotations

import orjson

from tests.server import ServerProcess
from tests.test_server_api import assert_aws_error, signed_call


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
