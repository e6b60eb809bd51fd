"""A model's `ModelDataUrl` made into a local model directory, once, cached by ETag.

Local directories are used in place; `model.tar.gz` files (local or in S3) are downloaded and
extracted under the cache, keyed by location and ETag, so a second job with the same
artifacts starts without downloading them again.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Callable

from conveyor.runtimes.artifacts import prepare_model_dir
from conveyor.storage.base import Storage, StorageError
from conveyor.storage.local import local_path
from conveyor.storage.uri import parse_uri


class ModelDataError(Exception):
    """The model artifacts cannot be fetched or unpacked."""


def model_directory(model_data_url: str, cache_dir: str, storage_for: Callable[[str], Storage], *, field: str = "ModelDataUrl") -> str:
    """The local directory of a model directory or archive at `model_data_url`; `field` names
    the location in errors (ModelDataUrl, or script mode's SAGEMAKER_SUBMIT_DIRECTORY)."""
    scheme = parse_uri(model_data_url)[0]
    if scheme == "file" and os.path.isdir(local_path(model_data_url)):
        return local_path(model_data_url)
    storage = storage_for(model_data_url)
    try:
        info = storage.stat(model_data_url)
    except StorageError as exc:
        raise ModelDataError(f"Could not read {field} {model_data_url}: {exc.code}: {exc.detail}") from None
    key = hashlib.sha256(f"{model_data_url}\0{info.etag}".encode()).hexdigest()[:24]
    entry = os.path.join(cache_dir, key)
    os.makedirs(entry, exist_ok=True)
    if scheme == "file":
        archive = local_path(model_data_url)
    else:
        archive = os.path.join(entry, "model.tar.gz")
        if not os.path.exists(archive):
            partial = f"{archive}.{uuid.uuid4().hex}.partial"
            try:
                with storage.open_read(model_data_url) as source, open(partial, "wb") as target:
                    while chunk := source.read(8 << 20):
                        target.write(chunk)
                os.replace(partial, archive)
            except StorageError as exc:
                raise ModelDataError(f"Could not download {field} {model_data_url}: {exc.code}: {exc.detail}") from None
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
    try:
        return prepare_model_dir(archive, os.path.join(entry, "model"))
    except (OSError, ValueError) as exc:
        raise ModelDataError(f"Could not unpack {field} {model_data_url}: {exc}") from None
