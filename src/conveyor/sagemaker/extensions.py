"""Conveyor's own Environment keys: extensions an unmodified SageMaker client can turn on.

A job's `Environment` may hold keys that Conveyor reads for itself, so that boto3, the AWS CLI
and the SageMaker SDK reach Conveyor's extensions without new API fields (docs/semantics.md,
"Conveyor's Environment keys"). Each is checked at create time, with a ValidationException that
names the key, the value and the rule; it is consumed by Conveyor and never reaches the model;
and a CLI flag that disagrees with it is refused. Other `CONVEYOR_*` names reach the model as
any Environment entry does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from conveyor.errors import FieldError

MAX_FAILED_RECORDS = "CONVEYOR_MAX_FAILED_RECORDS"
RESERVED_KEYS = frozenset({MAX_FAILED_RECORDS})
PERCENT_CHECKED_FROM = 10_000
"""A percentage is checked against the records seen so far only once they are this many."""

_COUNT = re.compile(r"\d+")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)%")


@dataclass(frozen=True)
class FailedRecordLimit:
    """How many records may fail before the job does: a count, or a percentage of its records."""

    count: int | None = None
    percent: float | None = None

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"

    def exceeded(self, failed: int, records: int, *, final: bool) -> bool:
        """Whether `failed` of `records` is over the limit. A count is checked as records fail;
        a percentage at the end, or before once `records` reaches PERCENT_CHECKED_FROM."""
        if self.count is not None:
            return failed > self.count
        assert self.percent is not None
        if not final and records < PERCENT_CHECKED_FROM:
            return False
        return records > 0 and failed * 100 > self.percent * records


def parse_failed_record_limit(value: str) -> FailedRecordLimit:
    """`10` (records) or `0.5%` (of the job's records); ValueError with the rule otherwise."""
    text = value.strip()
    if _COUNT.fullmatch(text):
        return FailedRecordLimit(count=int(text))
    match = _PERCENT.fullmatch(text)
    if match and math.isfinite(percent := float(match.group(1))) and percent <= 100:
        return FailedRecordLimit(percent=percent)
    raise ValueError("must be a whole number of records (10) or a percentage of the job's records from 0% to 100% (0.5%)")


def limit_errors(environment: dict[str, str]) -> list[FieldError]:
    """The reserved keys of `environment` that hold a value Conveyor cannot use."""
    value = environment.get(MAX_FAILED_RECORDS)
    if value is None:
        return []
    try:
        parse_failed_record_limit(value)
    except ValueError as exc:
        message = f"Environment {MAX_FAILED_RECORDS}='{value}' is not a limit Conveyor can use: it {exc}"
        return [FieldError(f"environment.{MAX_FAILED_RECORDS}", value, str(exc), message=message)]
    return []


def with_reserved_key(environment: dict[str, str] | None, key: str, value: str, given_as: str) -> dict[str, str]:
    """`environment` with `key` set to `value` from a flag or argument (`given_as`); a different
    value already in the Environment is refused (ValueError), never silently replaced."""
    merged = dict(environment or {})
    if key in merged and merged[key] != value:
        raise ValueError(f"{given_as} {value} and Environment {key}='{merged[key]}' disagree: give one of them")
    merged[key] = value
    return merged


def without_reserved_keys(environment: dict[str, str]) -> dict[str, str]:
    """What reaches the model: the Environment less the keys Conveyor consumes."""
    return {key: value for key, value in environment.items() if key not in RESERVED_KEYS}
