"""Faults that used to give a 500, against a real `conveyor server` on 127.0.0.1: a dangling
symbolic link in an input folder is a ValidationException naming the object and the cause."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.models import BRACKET
from tests.server import ServerProcess
from tests.test_server_api import create_model, error_of, job_request, unique, write_inputs


def test_a_dangling_link_in_an_input_folder_is_named_at_create_time(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm = conveyor_server.client()
    model = create_model(sm, tmp_path, BRACKET)
    inputs = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    os.symlink(tmp_path / "gone.csv", tmp_path / "in" / "b.csv")
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**job_request(unique("dangling"), model, inputs, str(tmp_path / "out")))
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert f"the object file://{tmp_path}/in/b.csv cannot be read" in message
    assert f"a symbolic link to {tmp_path}/gone.csv, which does not exist" in message
