"""Conveyor's own Environment keys: extensions an unmodified SageMaker client can turn on.

A job's `Environment` (and, for `CONVEYOR_DECODE_WORKERS`, a model container's) may hold keys
that Conveyor reads for itself, so that boto3, the AWS CLI and the SageMaker SDK reach Conveyor's
extensions without new API fields (docs/semantics.md, "Conveyor's Environment keys"). One rule
for all of them: each is checked at create time, with a ValidationException that names the key,
the value and the rule; it is consumed by Conveyor and never reaches the model; and a CLI flag
that disagrees with it is refused. Other `CONVEYOR_*` names reach the model as any Environment
entry does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from conveyor.errors import FieldError

MAX_FAILED_RECORDS = "CONVEYOR_MAX_FAILED_RECORDS"
DECODE_WORKERS = "CONVEYOR_DECODE_WORKERS"
RESERVED_KEYS = frozenset({MAX_FAILED_RECORDS, DECODE_WORKERS})
MODEL_KEYS = frozenset({DECODE_WORKERS})
"""The reserved keys a model container's Environment may hold too; the others are a job's."""
MAX_DECODE_WORKERS = 64
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


def parse_decode_workers(value: str) -> int:
    """`2` (worker processes that run input_fn and output_fn); ValueError with the rule otherwise."""
    text = value.strip()
    if _COUNT.fullmatch(text) and 1 <= int(text) <= MAX_DECODE_WORKERS:
        return int(text)
    raise ValueError(f"must be a whole number of worker processes from 1 to {MAX_DECODE_WORKERS}")


_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    MAX_FAILED_RECORDS: (parse_failed_record_limit, "a limit"),
    DECODE_WORKERS: (parse_decode_workers, "a number of decode workers"),
}


def reserved_key_errors(environment: Mapping[str, Any], *, field: str = "environment", model: bool = False) -> list[FieldError]:
    """The reserved keys of `environment` that hold a value Conveyor cannot use; with `model`,
    also those a model's Environment may not hold. `field` is where the Environment sits."""
    errors = []
    for key in sorted(RESERVED_KEYS & environment.keys()):
        value = str(environment[key])
        parse, what = _PARSERS[key]
        if model and key not in MODEL_KEYS:
            message = f"Environment {key}='{value}' is a job's setting, not a model's: give it in the transform job's Environment"
            errors.append(FieldError(f"{field}.{key}", value, "must be given in the job's Environment", message=message))
            continue
        try:
            parse(value)
        except ValueError as exc:
            message = f"Environment {key}='{value}' is not {what} Conveyor can use: it {exc}"
            errors.append(FieldError(f"{field}.{key}", value, str(exc), message=message))
    return errors


def decode_workers(environment: Mapping[str, str]) -> int | None:
    """The CONVEYOR_DECODE_WORKERS of an Environment already checked, or None."""
    value = environment.get(DECODE_WORKERS)
    return None if value is None else parse_decode_workers(value)


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
