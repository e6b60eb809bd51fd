"""The typed CreateModel request: a model's containers, after validation.

`parse_model` turns SageMaker's JSON shape into these objects or raises `ValidationException`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ContainerSpec:
    image: str | None = None
    model_data_url: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    containers: list[ContainerSpec]  # PrimaryContainer alone, or Containers in order
    inference_mode: Literal["Serial", "Direct"] = "Serial"
    execution_role_arn: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> ContainerSpec:
        return self.containers[0]
