"""The high-level Python interface: `Transformer` and `Model`, shaped like the SageMaker SDK's,
against a Conveyor server (`endpoint_url=` or `session=`) or in this process."""

from conveyor.sdk.model import Model
from conveyor.sdk.session import LocalSession, RemoteSession, Session
from conveyor.sdk.transformer import Transformer, TransformJob, UnexpectedStatusException

__all__ = ["LocalSession", "Model", "RemoteSession", "Session", "TransformJob", "Transformer", "UnexpectedStatusException"]
