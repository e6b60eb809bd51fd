"""Job logs: the subset of the CloudWatch Logs API that the SageMaker SDK and `aws logs` use,
over the job log kept in the store (group `/aws/sagemaker/TransformJobs`, one stream per
instance named `<job>/instance-N`, and `<job>/instance-N/data-log` for per-record errors)."""

from __future__ import annotations

from typing import Any

from conveyor.errors import FieldError, LogsInvalidParameter, LogsResourceNotFound, job_not_found, render_errors
from conveyor.sagemaker.shapes import Shape, member_path, service_model, validate, without_nulls
from conveyor.store import InvalidToken, LogStream, Store

LOG_GROUP = "/aws/sagemaker/TransformJobs"
MAX_EVENTS = 10_000


LARGEST_LONG = 2**63 - 1


def _input_shape(operation: str) -> Shape:
    return service_model("logs").input_shape(operation)


def _validated(operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """Types, lengths, ranges and unknown members, checked against botocore's own CloudWatch Logs
    model (as the SageMaker operations are against SageMaker's), so that no malformed value
    reaches the store; returned with its null members dropped."""
    errors = validate(request, _input_shape(operation), "")
    errors += [
        FieldError(member_path("", name), value, f"Member must have value less than or equal to {LARGEST_LONG}")
        for name, value in request.items()
        if isinstance(value, int) and not isinstance(value, bool) and value > LARGEST_LONG
    ]
    if errors:
        raise LogsInvalidParameter(render_errors(errors))
    return without_nulls(request, _input_shape(operation))


def _group(request: dict[str, Any]) -> None:
    group = request.get("logGroupName")
    if not isinstance(group, str) or not group:
        raise LogsInvalidParameter("1 validation error detected: Value null at 'logGroupName' failed to satisfy constraint: Member must not be null")
    if group != LOG_GROUP:
        raise LogsResourceNotFound("The specified log group does not exist.")


def _limit(request: dict[str, Any], default: int, maximum: int) -> int:
    limit = request.get("limit", default)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise LogsInvalidParameter(
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
            f"Member must have value between 1 and {maximum}"
        )
    return limit


def _stream_shape(stream: LogStream, region: str, account: str) -> dict[str, Any]:
    return {
        "logStreamName": stream.name,
        "creationTime": stream.creation_time,
        "firstEventTimestamp": stream.first_event_time,
        "lastEventTimestamp": stream.last_event_time,
        "lastIngestionTime": stream.last_ingestion_time,
        "arn": f"arn:aws:logs:{region}:{account}:log-group:{LOG_GROUP}:log-stream:{stream.name}",
        "storedBytes": stream.stored_bytes,
    }


class LogOperations:
    def __init__(self, store: Store, *, region: str, account_id: str) -> None:
        self.store = store
        self.region = region
        self.account_id = account_id

    def describe_log_streams(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("DescribeLogStreams", request)
        _group(request)
        limit = _limit(request, 50, 50)
        if request.get("orderBy") == "LastEventTime" and request.get("logStreamNamePrefix"):
            raise LogsInvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = self.store.logs.streams(request.get("logStreamNamePrefix") or "")
        if request.get("orderBy") == "LastEventTime":
            streams.sort(key=lambda s: s.last_event_time)
        else:
            streams.sort(key=lambda s: s.name)
        if request.get("descending"):
            streams.reverse()
        start = int(request.get("nextToken") or 0) if str(request.get("nextToken") or "0").isdigit() else 0
        page = streams[start : start + limit]
        response: dict[str, Any] = {"logStreams": [_stream_shape(s, self.region, self.account_id) for s in page]}
        if start + limit < len(streams):
            response["nextToken"] = str(start + limit)
        return response

    def get_log_events(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("GetLogEvents", request)
        _group(request)
        stream = request.get("logStreamName")
        if not isinstance(stream, str) or not stream:
            raise LogsInvalidParameter("1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint: Member must not be null")
        if not any(s.name == stream for s in self.store.logs.streams(stream)):
            raise LogsResourceNotFound("The specified log stream does not exist.")
        try:
            page = self.store.logs.read(
                stream,
                token=request.get("nextToken"),
                start_from_head=bool(request.get("startFromHead", False)),
                limit=_limit(request, MAX_EVENTS, MAX_EVENTS),
                start_time_ms=request.get("startTime"),
                end_time_ms=request.get("endTime"),
            )
        except InvalidToken:
            raise LogsInvalidParameter("The specified nextToken is invalid.") from None
        return {
            "events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time} for e in page.events],
            "nextForwardToken": page.next_forward_token,
            "nextBackwardToken": page.next_backward_token,
        }

    def filter_log_events(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("FilterLogEvents", request)
        _group(request)
        names = request.get("logStreamNames")
        prefix = request.get("logStreamNamePrefix")
        if names and prefix:
            raise LogsInvalidParameter("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        pattern = (request.get("filterPattern") or "").strip().strip('"') or None
        end = request.get("endTime")
        try:
            page = self.store.logs.filter(
                stream_names=names,
                stream_prefix=prefix,
                contains=pattern,
                start_time_ms=request.get("startTime"),
                end_time_ms=end + 1 if isinstance(end, int) else None,  # CloudWatch's endTime is inclusive
                limit=_limit(request, MAX_EVENTS, MAX_EVENTS),
                next_token=request.get("nextToken"),
            )
        except InvalidToken:
            raise LogsInvalidParameter("The specified nextToken is invalid.") from None
        events = [
            {
                "logStreamName": e.stream_name,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": str(e.event_id),
            }
            for e in page.items
        ]
        response: dict[str, Any] = {
            "events": events,
            "searchedLogStreams": [{"logStreamName": name, "searchedCompletely": True} for name in sorted({str(e["logStreamName"]) for e in events})],
        }
        if page.next_token:
            response["nextToken"] = page.next_token
        return response

    def job_log(self, job_name: str, *, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        """Conveyor's own log route: every stream of one job in the order written. `after` is
        the `position` returned by the previous call, so a follower can poll for what is new.
        An unknown job is SageMaker's not-found error, so callers need not describe it first."""
        if self.store.jobs.get(job_name) is None:
            raise job_not_found(job_name)
        if after and not after.isdigit():
            raise LogsInvalidParameter(f"Invalid position {after!r}: use the position returned by the previous call.")
        events = self.store.logs.since(job_name, int(after or 0), min(max(limit, 1), MAX_EVENTS))
        return {
            "events": [{"stream": e.stream_name, "timestamp": e.timestamp, "message": e.message} for e in events],
            "position": str(events[-1].event_id) if events else (after or "0"),
        }
