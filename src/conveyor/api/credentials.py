"""The server's access keys, kept in the AWS shared-credentials format.

The same `[default]` section that `aws configure` writes, so a user can copy the file to
`~/.aws/credentials` (or point `AWS_SHARED_CREDENTIALS_FILE` at it) and boto3 signs requests
that this server accepts. Keys can also come from the environment, for containers.
"""

from __future__ import annotations

import configparser
import logging
import os
import secrets
import string
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ACCESS_KEY_ENV = "CONVEYOR_ACCESS_KEY_ID"
SECRET_KEY_ENV = "CONVEYOR_SECRET_ACCESS_KEY"

_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class CredentialsError(ValueError):
    """The configured keys cannot be used; the message says where and why."""


@dataclass(frozen=True)
class CredentialsFile:
    """Keys read from (or just written to) a shared-credentials file.

    `created` is true on the call that wrote the file, so the server prints the new keys once.
    """

    path: Path
    access_key_id: str
    secret_access_key: str
    keys: Mapping[str, str]
    created: bool = False

    def lookup(self, access_key_id: str) -> str | None:
        """The secret for an access key id, or None: the callable `verify_sigv4` expects."""
        return self.keys.get(access_key_id)


def load_or_create_credentials(path: Path) -> CredentialsFile:
    """Read the keys at `path`; on first use write a fresh `[default]` pair there (mode 0600).

    Every section that holds both `aws_access_key_id` and `aws_secret_access_key` is accepted,
    so more keys can be added by hand. The file is created atomically and exclusively (written
    aside, then hard-linked into place), so two servers starting at once agree on one key pair.
    """
    path = Path(path)
    created = False
    if not path.exists():
        created = _create(path, generate_access_key_id(), generate_secret_access_key())
    default, keys = _read(path)
    if created:
        logger.info("Created access keys in %s", path)
    elif os.name == "posix" and path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; `chmod 600 %s` keeps the keys private", path, path)
    return CredentialsFile(path, default[0], default[1], keys, created)


def keys_from_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """`{access key id: secret}` from CONVEYOR_ACCESS_KEY_ID / CONVEYOR_SECRET_ACCESS_KEY.

    None when neither is set; an error when only one is, rather than silently using the file.
    """
    access_key_id = (environ.get(ACCESS_KEY_ENV) or "").strip()
    secret = (environ.get(SECRET_KEY_ENV) or "").strip()
    if not access_key_id and not secret:
        return None
    if not access_key_id or not secret:
        present, absent = (ACCESS_KEY_ENV, SECRET_KEY_ENV) if access_key_id else (SECRET_KEY_ENV, ACCESS_KEY_ENV)
        raise CredentialsError(f"{present} is set but {absent} is not; set both, or neither to use the key file.")
    return {access_key_id: secret}


def static_lookup(keys: Mapping[str, str]) -> Callable[[str], str | None]:
    """A `verify_sigv4` credentials callable over a fixed set of keys."""
    frozen = dict(keys)
    return frozen.get


def generate_access_key_id() -> str:
    """`AKIA` and 16 random upper-case letters and digits: 20 characters, as AWS keys look."""
    return "AKIA" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(16))


def generate_secret_access_key() -> str:
    """40 random characters from AWS's secret-key alphabet (letters, digits, `+`, `/`)."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def _create(path: Path, access_key_id: str, secret: str) -> bool:
    """Write the file if it does not exist yet; False if another process won the race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n"
    descriptor, temporary = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, written in place
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(content)
        return True
    finally:
        os.unlink(temporary)


def _read(path: Path) -> tuple[tuple[str, str], dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as error:
        raise CredentialsError(f"cannot read access keys from {path}: {error}") from error
    keys: dict[str, str] = {}
    default: tuple[str, str] | None = None
    for section in ["default", *(name for name in parser.sections() if name != "default")]:
        if not parser.has_section(section):
            continue
        access_key_id = parser.get(section, "aws_access_key_id", fallback="").strip()
        secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
        if access_key_id and secret:
            keys[access_key_id] = secret
            default = default or (access_key_id, secret)
    if default is None:
        raise CredentialsError(
            f"{path} holds no access keys: expected a section with aws_access_key_id and aws_secret_access_key"
        )
    return default, keys
