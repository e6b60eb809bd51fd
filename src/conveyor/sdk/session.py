"""How the SDK reaches SageMaker's operations: a server over HTTP, or a service in this process.

Both sessions take SageMaker's request dicts and give back its response dicts, and both raise
botocore's `ClientError` for a refused request, so `Transformer` and `Model` have one code path:

- `RemoteSession`: botocore `sagemaker` and `logs` clients pointed at a Conveyor server's
  `endpoint_url` (or at SageMaker itself when none is given), signed with the standard
  credential chain or explicit keys;
- `LocalSession`: an in-process `conveyor.service.Service` over `Settings.from_environ()`
  (`CONVEYOR_HOME`), started on first use, so jobs run here without a server.
"""

from __future__ import annotations

import atexit
import copy
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions
import botocore.session

if TYPE_CHECKING:
    from conveyor.service import Service
    from conveyor.settings import Settings

LOG_GROUP = "/aws/sagemaker/TransformJobs"

_SAGEMAKER_OPERATIONS = {
    "create_model": "CreateModel",
    "describe_model": "DescribeModel",
    "delete_model": "DeleteModel",
    "create_transform_job": "CreateTransformJob",
    "describe_transform_job": "DescribeTransformJob",
    "list_transform_jobs": "ListTransformJobs",
    "stop_transform_job": "StopTransformJob",
}
_LOGS_OPERATIONS = {
    "describe_log_streams": "DescribeLogStreams",
    "get_log_events": "GetLogEvents",
}


class Session:
    """SageMaker's operations as `session.<operation>(request_dict) -> response_dict`."""

    local_mode = False

    def _call(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def create_model(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "create_model", request)

    def describe_model(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "describe_model", request)

    def delete_model(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "delete_model", request)

    def create_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "create_transform_job", request)

    def describe_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "describe_transform_job", request)

    def list_transform_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "list_transform_jobs", request)

    def stop_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("sagemaker", "stop_transform_job", request)

    def describe_log_streams(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("logs", "describe_log_streams", request)

    def get_log_events(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("logs", "get_log_events", request)

    def default_output_path(self, job_name: str) -> str:
        """Where a job writes when the Transformer names no `output_path`."""
        raise ValueError(
            "output_path is required when talking to a server: give Transformer(output_path=...) an s3:// URI "
            "or a path the server can write to"
        )

    def close(self) -> None:
        """Release what the session holds (a no-op for a remote one)."""


class RemoteSession(Session):
    """A Conveyor server (or SageMaker) over HTTP, through botocore clients.

    `boto_session` may be a `boto3.Session` or a botocore session; without one, a botocore
    session is made from the explicit keys, or the standard credential chain.
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        boto_session: Any = None,
        config: botocore.config.Config | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        if boto_session is None:
            boto_session = botocore.session.get_session()
        if region_name is None:
            region_name = _session_region(boto_session) or "us-east-1"
        self.region_name = region_name
        keys = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        options: dict[str, Any] = {
            "region_name": region_name,
            "endpoint_url": endpoint_url,
            "config": config or botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"}),
            **{key: value for key, value in keys.items() if value is not None},
        }
        create = boto_session.client if hasattr(boto_session, "client") else boto_session.create_client
        self.sagemaker_client = create("sagemaker", **options)
        self.logs_client = create("logs", **options)

    def __repr__(self) -> str:
        return f"RemoteSession(endpoint_url={self.endpoint_url!r}, region_name={self.region_name!r})"

    def _call(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        client = self.sagemaker_client if service == "sagemaker" else self.logs_client
        response = dict(getattr(client, method)(**request))
        response.pop("ResponseMetadata", None)
        return response


class LocalSession(Session):
    """Conveyor's service in this process: jobs run on this machine, state under `settings.home`.

    The service (store and scheduler) starts on the first call and stops at `close()` or at
    interpreter exit; a job still running then resumes the next time a service opens that home.
    """

    local_mode = True

    def __init__(self, settings: "Settings | None" = None) -> None:
        if settings is None:
            from conveyor.settings import Settings

            settings = Settings.from_environ()
        self.settings = settings
        self._service: "Service | None" = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalSession(home={str(self.settings.home)!r})"

    @property
    def service(self) -> "Service":
        with self._lock:
            if self._service is None:
                from conveyor.service import Service

                self._service = Service(self.settings).start()
                atexit.register(self.close)
            return self._service

    def _call(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        from conveyor.errors import ConveyorError

        operations = self.service.sagemaker if service == "sagemaker" else self.service.logs
        try:
            return getattr(operations, method)(copy.deepcopy(request))
        except ConveyorError as error:
            operation = (_SAGEMAKER_OPERATIONS if service == "sagemaker" else _LOGS_OPERATIONS)[method]
            response = {"Error": {"Code": error.code, "Message": error.message}, "ResponseMetadata": {"HTTPStatusCode": error.status}}
            raise botocore.exceptions.ClientError(response, operation) from None

    def default_output_path(self, job_name: str) -> str:
        """`./output/<job name>` in the working directory: never the state directory, which no
        job may read or write (docs/security.md)."""
        return str(Path.cwd() / "output" / job_name)

    def close(self) -> None:
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            atexit.unregister(self.close)
            service.close()
        with _DEFAULTS_LOCK:
            for key, session in list(_DEFAULT_LOCAL_SESSIONS.items()):
                if session is self:
                    del _DEFAULT_LOCAL_SESSIONS[key]


# One in-process service per state directory: a Model and a Transformer made without a session
# share it, rather than each opening the store and running a scheduler of its own.
_DEFAULT_LOCAL_SESSIONS: dict[Path, LocalSession] = {}
_DEFAULTS_LOCK = threading.Lock()


def default_local_session() -> LocalSession:
    """The shared in-process session for this environment's `CONVEYOR_HOME`."""
    from conveyor.settings import Settings

    settings = Settings.from_environ()
    key = Path(settings.home).resolve()
    with _DEFAULTS_LOCK:
        session = _DEFAULT_LOCAL_SESSIONS.get(key)
        if session is None:
            session = _DEFAULT_LOCAL_SESSIONS[key] = LocalSession(settings)
        return session


def resolve_session(session: Any = None, endpoint_url: str | None = None) -> Session:
    """The session a Transformer or Model uses: the one given; a `boto3.Session` wrapped with
    `endpoint_url`; a remote session for `endpoint_url`; else the in-process local one."""
    if isinstance(session, Session):
        if endpoint_url is not None:
            raise ValueError("give either session= or endpoint_url=, not both")
        return session
    if session is not None:
        if not (hasattr(session, "client") or hasattr(session, "create_client")):
            raise TypeError(f"session must be a conveyor.sdk.Session or a boto3 Session, not {type(session).__name__}")
        return RemoteSession(endpoint_url, boto_session=session)
    if endpoint_url is not None:
        return RemoteSession(endpoint_url)
    return default_local_session()


def _session_region(boto_session: Any) -> str | None:
    region = getattr(boto_session, "region_name", None)
    if region is None and hasattr(boto_session, "get_config_variable"):
        region = boto_session.get_config_variable("region")
    return region
