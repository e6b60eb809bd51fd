"""Conveyor: SageMaker Batch Transform's API and semantics, on one machine or a Ray cluster.

`conveyor.Transformer` and `conveyor.Model` (the SDK, `conveyor.sdk`) are imported on first
use, so `import conveyor` stays light for the command line and the workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.sdk import Model, Transformer

__all__ = ["Model", "Transformer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import conveyor.sdk

        return getattr(conveyor.sdk, name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
