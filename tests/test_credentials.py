"""The server's key file: created once, private, and readable by boto3 as a credentials file."""

from __future__ import annotations

import re
import stat
import threading
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from conveyor.api.credentials import (
    CredentialsError,
    keys_from_env,
    load_or_create_credentials,
    static_lookup,
)
from conveyor.api.sigv4 import verify_sigv4


def test_first_call_creates_private_keys_and_later_calls_read_them(tmp_path: Path) -> None:
    path = tmp_path / "home" / "credentials"
    first = load_or_create_credentials(path)
    assert first.created
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", first.access_key_id)
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", first.secret_access_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["credentials"]  # no temporary left behind

    again = load_or_create_credentials(path)
    assert not again.created
    assert (again.access_key_id, again.secret_access_key) == (first.access_key_id, first.secret_access_key)
    assert again.lookup(first.access_key_id) == first.secret_access_key
    assert again.lookup("AKIAOTHER") is None


def test_concurrent_first_calls_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_credentials(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({(r.access_key_id, r.secret_access_key) for r in results}) == 1
    assert sum(r.created for r in results) == 1


def test_boto3_reads_the_file_and_its_signature_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "credentials"
    keys = load_or_create_credentials(path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    credentials = boto3.Session().get_credentials()
    assert credentials.access_key == keys.access_key_id

    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=b"{}", headers={"X-Amz-Target": "SageMaker.ListModels"})
    SigV4Auth(credentials, "sagemaker", "us-west-2").add_auth(request)
    headers = {**dict(request.headers.items()), "host": "127.0.0.1:8080"}
    assert (
        verify_sigv4(method="POST", path="/", query="", headers=headers, body=b"{}", credentials=keys.lookup)
        == keys.access_key_id
    )


def test_hand_added_profiles_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\naws_access_key_id = AKIAONE\naws_secret_access_key = one\n\n"
        "[ci]\naws_access_key_id = AKIATWO\naws_secret_access_key = two%\n\n[incomplete]\naws_access_key_id = X\n"
    )
    path.chmod(0o600)
    keys = load_or_create_credentials(path)
    assert not keys.created
    assert keys.access_key_id == "AKIAONE"
    assert dict(keys.keys) == {"AKIAONE": "one", "AKIATWO": "two%"}


@pytest.mark.parametrize("content", ["", "[default]\nregion = us-east-1\n", "not an ini file"])
def test_file_without_keys_is_an_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=re.escape(str(path))):
        load_or_create_credentials(path)


def test_keys_from_env() -> None:
    assert keys_from_env({}) is None
    assert keys_from_env({"CONVEYOR_ACCESS_KEY_ID": "AKIAENV", "CONVEYOR_SECRET_ACCESS_KEY": "s"}) == {"AKIAENV": "s"}
    with pytest.raises(CredentialsError, match="CONVEYOR_ACCESS_KEY_ID is set but CONVEYOR_SECRET_ACCESS_KEY is not"):
        keys_from_env({"CONVEYOR_ACCESS_KEY_ID": "AKIAENV"})
    with pytest.raises(CredentialsError, match="CONVEYOR_SECRET_ACCESS_KEY is set but CONVEYOR_ACCESS_KEY_ID is not"):
        keys_from_env({"CONVEYOR_SECRET_ACCESS_KEY": "s"})
    lookup = static_lookup({"AKIAENV": "s"})
    assert (lookup("AKIAENV"), lookup("AKIAOTHER")) == ("s", None)
