"""SageMaker's JSONPath subset for InputFilter/OutputFilter (being written; see issue 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JsonPath:
    expression: str
