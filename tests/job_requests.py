"""The CreateTransformJob request the server tests send, written once: a Line-split job over
one input prefix, with only what a test varies given as arguments."""

from __future__ import annotations

from typing import Any

OUTPUT_MEMBERS = ("KmsKeyId", "AssembleWith", "Accept")
"""Members of TransformOutput that a test may pass by name beside the top-level ones."""


def job_request(
    name: str,
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    data_type: str = "S3Prefix",
    content_type: str = "text/csv",
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    """The request as boto3's create_transform_job takes it; `extra` adds top-level members
    (MaxPayloadInMB=1, ModelClientConfig=…) or TransformOutput's (AssembleWith="Line")."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": input_uri}},
            "ContentType": content_type,
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output_uri},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }
    for key, value in extra.items():
        if key in OUTPUT_MEMBERS:
            request["TransformOutput"][key] = value
        else:
            request[key] = value
    return request
