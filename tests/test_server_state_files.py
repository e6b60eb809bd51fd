"""What `conveyor server` says at start-up about a damaged state directory: a corrupt database
is named in one message with SQLite's words and what to do; a database missing beside existing
access keys is warned about once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server import start_server


def test_a_corrupt_database_is_one_message_naming_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database = home / "conveyor.db"
    database.write_bytes(b"this is not an SQLite file, it only has its name " * 100)
    with pytest.raises(RuntimeError) as caught:
        start_server(home)
    log = str(caught.value)
    assert "Traceback" not in log
    assert (
        f"conveyor server: the database {database} cannot be opened: SQLite says 'file is not a database'. "
        "Stop every server using it, then restore it from a backup (README, 'Back up'), or move it aside"
    ) in log


def test_a_database_missing_beside_its_credentials_is_warned_about_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home)
    server.client().list_models()
    server.stop()
    for name in ("conveyor.db", "conveyor.db-wal", "conveyor.db-shm"):
        (home / name).unlink(missing_ok=True)

    warning = f"WARNING: {home / 'conveyor.db'} is missing although {home / 'credentials'} exists"
    server = server.restart()
    server.client().list_models()
    server.stop()
    assert server.log().count(warning) == 1

    server = server.restart()
    server.client().list_models()
    server.stop()
    assert warning not in server.log()
