"""Where on this host a job may read and write: the server's trust boundary for `file://`.

An API key runs jobs as the server's user, so the server decides which local trees a job may
name (docs/security.md):

- CONVEYOR_HOME (the database, the access keys, the cookie-signing key) is never a job location;
- with `--local-root` set (CONVEYOR_LOCAL_ROOTS), `file://` inputs, outputs, model data and
  data capture must lie inside one of the roots;
- without roots, a server listening on loopback leaves local paths open (one user's laptop),
  and a server listening on any other address refuses `file://` altogether.

Paths are compared after resolving symlinks and `..`, so a link inside a root that points out
of it is refused. Each input object and each output is checked, not only the prefixes.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable

from conveyor.engine.job import WorkItem
from conveyor.errors import FieldError, ValidationException
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings
from conveyor.storage.uri import parse_uri


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_path_problem(
    uri: str, settings: Settings, *, holds_tree: bool = False, resolve: Callable[[str], str] = os.path.realpath, nodes: int = 1
) -> str | None:
    """Why a job may not use `uri`, or None. `holds_tree`: the location is a folder used whole
    (model data), so it may not contain CONVEYOR_HOME either. `nodes`: the machines the job's
    instances may run on (a Ray cluster's), which all see a local path only under a local root."""
    scheme, _, path = parse_uri(uri)
    if scheme != "file":
        return None
    real = resolve(path)
    home = resolve(str(settings.home))
    if _inside(real, home) or (holds_tree and _inside(home, real)):
        where = "is inside" if _inside(real, home) else "contains"
        return (
            f"{uri} {where} the server's state directory {home} (CONVEYOR_HOME), which holds its database and "
            "access keys; a job may not read or write there"
        )
    if settings.local_roots:
        if not any(_inside(real, str(root)) for root in settings.local_roots):
            roots = ", ".join(str(root) for root in settings.local_roots)
            resolved = "" if real == os.path.normpath(path) else f" (resolved: {real})"
            return f"{uri}{resolved} is outside this server's local roots {roots} (--local-root, CONVEYOR_LOCAL_ROOTS)"
        return None
    if nodes > 1:
        return (
            f"{uri}: this job's instances run on a Ray cluster of {nodes} nodes, which read and write local paths each on "
            "its own disk; set --local-root DIR (CONVEYOR_LOCAL_ROOTS) to trees that every node mounts, or use S3"
        )
    if not is_loopback(settings.host):
        return (
            f"{uri}: this server listens on {settings.host}, not only on loopback, and has no local roots, so it "
            "refuses file:// locations; set --local-root DIR (CONVEYOR_LOCAL_ROOTS) to the trees jobs may use"
        )
    return None


def check_model_locations(model: ModelSpec, settings: Settings, *, primary: bool, nodes: int = 1) -> None:
    """Raise ValidationException naming each container whose local ModelDataUrl is refused."""
    errors = []
    for index, container in enumerate(model.containers):
        if not container.model_data_url:
            continue
        problem = local_path_problem(container.model_data_url, settings, holds_tree=True, nodes=nodes)
        if problem is not None:
            field = "primaryContainer.modelDataUrl" if primary else f"containers.{index + 1}.member.modelDataUrl"
            errors.append(FieldError(field, container.model_data_url, problem, message=f"Model '{model.name}': {problem}"))
    if errors:
        raise ValidationException(errors)


def check_job_locations(job: TransformJobSpec, settings: Settings, *, nodes: int = 1) -> None:
    """The job's input, output and capture locations, before anything is listed or read."""
    locations = [
        ("transformInput.dataSource.s3DataSource.s3Uri", job.input.uri),
        ("transformOutput.s3OutputPath", job.output.output_path),
    ]
    if job.data_capture is not None:
        locations.append(("dataCaptureConfig.destinationS3Uri", job.data_capture.destination_uri))
    _raise_for(locations, settings, nodes=nodes)


def check_planned_items(items: Iterable[WorkItem], settings: Settings, *, nodes: int = 1) -> None:
    """Each input object as resolved (a symlink may point anywhere) and each output it will write."""
    _raise_for(
        (
            (field, uri)
            for item in items
            for field, uri in (
                ("transformInput.dataSource.s3DataSource.s3Uri", item.input_uri),
                ("transformOutput.s3OutputPath", item.output_uri),
            )
        ),
        settings,
        first_only=True,
        resolve=_FolderCachedRealpath(),
        nodes=nodes,
    )


class _FolderCachedRealpath:
    """`os.path.realpath`, resolving each folder once: a job's objects share a few folders, and
    resolving every path in full cost a job of 3,000 objects most of a second."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(path)
        if name in ("", ".", "..") or os.path.islink(path):
            return os.path.realpath(path)
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder)
        return os.path.join(self._folders[folder], name)


def _raise_for(
    locations: Iterable[tuple[str, str]],
    settings: Settings,
    *,
    first_only: bool = False,
    resolve: Callable[[str], str] = os.path.realpath,
    nodes: int = 1,
) -> None:
    errors = []
    for field, uri in locations:
        problem = local_path_problem(uri, settings, resolve=resolve, nodes=nodes)
        if problem is not None:
            errors.append(FieldError(field, uri, problem, message=problem))
            if first_only:
                break
    if errors:
        raise ValidationException(errors)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
