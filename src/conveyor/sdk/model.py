"""`Model`: a model directory or `model.tar.gz` made into a SageMaker model, as the SDK's
`sagemaker.model.Model` does, ready to hand a `Transformer` out."""

from __future__ import annotations

import logging
import os
from typing import Any

import botocore.exceptions

from conveyor.sdk.session import Session, resolve_session
from conveyor.sdk.transformer import Transformer, absolute_location, base_name_from_image, format_tags, is_uri, name_from_base

logger = logging.getLogger("conveyor.sdk")

DEFAULT_IMAGE = "conveyor:python"


class Model:
    """A CreateModel request for one container: `model_data` (a directory or `model.tar.gz`
    holding `code/inference.py`, as a path, `file://` or `s3://` URI) run by `image`.

    `image="conveyor:python"` runs the handlers in-process; SageMaker framework images with
    `code/inference.py` do too. Without `name`, one is made from the image and a timestamp.
    """

    def __init__(
        self,
        model_data: str | os.PathLike[str],
        image: str = DEFAULT_IMAGE,
        env: dict[str, str] | None = None,
        name: str | None = None,
        role: str | None = None,
        tags: dict[str, str] | list[dict[str, str]] | None = None,
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        sagemaker_session: Any = None,
        image_uri: str | None = None,
    ) -> None:
        if session is not None and sagemaker_session is not None:
            raise ValueError("give either session= or sagemaker_session=, not both")
        self.model_data = absolute_location(model_data)
        if not is_uri(self.model_data) and not os.path.exists(self.model_data):
            raise FileNotFoundError(f"model_data {os.fspath(model_data)!r}: no such file or directory ({self.model_data})")
        self.image = image_uri or image
        self.env = env
        self.name = name
        self.role = role
        self.tags = tags
        self.session: Session = resolve_session(session or sagemaker_session, endpoint_url)
        self._base_name: str | None = None
        self._created = False

    @property
    def sagemaker_session(self) -> Session:
        return self.session

    def create_request(self) -> dict[str, Any]:
        """The CreateModel request, as the SDK's `container_def` and `_create_model_request`
        build it (Environment always present)."""
        request: dict[str, Any] = {
            "ModelName": self.name,
            "PrimaryContainer": {"Image": self.image, "Environment": dict(self.env or {}), "ModelDataUrl": self.model_data},
        }
        if self.role is not None:
            request["ExecutionRoleArn"] = self.role
        if self.tags:
            request["Tags"] = format_tags(self.tags)
        return request

    def create(self) -> str:
        """CreateModel (once per Model); returns the model's name. A model of that name that
        already exists is used as it is, as the SDK does."""
        if self._created:
            return self.name  # type: ignore[return-value]
        if self.name is None:
            self._base_name = base_name_from_image(self.image)
            self.name = name_from_base(self._base_name)
        try:
            self.session.create_model(self.create_request())
        except botocore.exceptions.ClientError as error:
            details = error.response.get("Error", {})
            if details.get("Code") != "ValidationException" or "Cannot create already existing model" not in details.get("Message", ""):
                raise
            logger.warning("Using already existing model: %s", self.name)
        self._created = True
        return self.name

    def describe(self) -> dict[str, Any]:
        if self.name is None:
            raise ValueError("The model has not been created: call create() first")
        return self.session.describe_model({"ModelName": self.name})

    def delete_model(self) -> None:
        if self.name is None:
            raise ValueError("The model has not been created: there is nothing to delete")
        self.session.delete_model({"ModelName": self.name})
        self._created = False

    def transformer(
        self,
        instance_count: int = 1,
        instance_type: str = "local",
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        env: dict[str, str] | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: dict[str, str] | list[dict[str, str]] | None = None,
        volume_kms_key: str | None = None,
    ) -> Transformer:
        """Create the model if need be, and a Transformer for it on this model's session."""
        self.create()
        return Transformer(
            self.name,  # type: ignore[arg-type]
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            output_path=output_path,
            output_kms_key=output_kms_key,
            accept=accept,
            max_concurrent_transforms=max_concurrent_transforms,
            max_payload=max_payload,
            env=env,
            tags=tags,
            base_transform_job_name=self._base_name or self.name,
            volume_kms_key=volume_kms_key,
            session=self.session,
        )
