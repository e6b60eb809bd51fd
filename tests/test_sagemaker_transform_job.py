"""CreateTransformJob requests: parsing, every validation rule, and SageMaker's wording."""

from __future__ import annotations

import copy
from typing import Any

import botocore.session
import pytest

from conveyor.errors import ValidationException
from conveyor.sagemaker import DataProcessing, TransformJobSpec, parse_transform_job

INSTANCE_TYPES = list(botocore.session.get_session().get_service_model("sagemaker").shape_for("TransformInstanceType").enum)


def seed_request(input_location: str = "s3://bucket/kmeans_batch_example/input", output_location: str = "s3://bucket/kmeans_batch_example/output") -> dict[str, Any]:
    """The low-level boto3 request of the seed walkthrough (seeds/000_…), with its locations."""
    return {
        "TransformJobName": "Batch-Transform-2024-05-13-10-20-30",
        "ModelName": "kmeans-model",
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformOutput": {"S3OutputPath": output_location},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_location}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1},
    }


def with_changes(**changes: Any) -> dict[str, Any]:
    """The seed request with members replaced; `A__B=value` sets request["A"]["B"]."""
    request = seed_request()
    for dotted, value in changes.items():
        *parents, name = dotted.split("__")
        target = request
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is ...:
            target.pop(name, None)
        else:
            target[name] = value
    return request


def error_message(request: dict[str, Any]) -> str:
    with pytest.raises(ValidationException) as caught:
        parse_transform_job(request)
    assert caught.value.code == "ValidationException" and caught.value.status == 400
    return caught.value.message


def one_error(request: dict[str, Any]) -> str:
    message = error_message(request)
    assert message.startswith("1 validation error detected: ") or "validation error" not in message, message
    return message


# -- the seed request ------------------------------------------------------------------------


def test_seed_request_parses() -> None:
    job = parse_transform_job(seed_request())
    assert isinstance(job, TransformJobSpec)
    assert job.name == "Batch-Transform-2024-05-13-10-20-30"
    assert job.model_name == "kmeans-model"
    assert (job.input.data_type, job.input.uri) == ("S3Prefix", "s3://bucket/kmeans_batch_example/input")
    assert (job.input.content_type, job.input.split_type, job.input.compression) == ("text/csv", "Line", "None")
    assert job.output.output_path == "s3://bucket/kmeans_batch_example/output"
    assert (job.output.accept, job.output.assemble_with, job.output.kms_key_id) == (None, "None", None)
    assert (job.resources.instance_type, job.resources.instance_count) == ("ml.m4.xlarge", 1)
    assert (job.max_concurrent_transforms, job.max_payload_mb, job.batch_strategy) == (4, 6, "MultiRecord")
    assert (job.model_client.invocations_timeout_seconds, job.model_client.invocations_max_retries) == (600, 3)
    assert job.data_processing == DataProcessing()
    assert job.data_capture is None and job.environment == {} and job.tags == []
    assert job.request == seed_request()


@pytest.mark.parametrize(
    ("input_location", "output_location", "input_uri", "output_uri"),
    [
        ("file:///data/input/", "file:///data/output", "file:///data/input/", "file:///data/output"),
        ("/data/input/", "/data/output/", "file:///data/input/", "file:///data/output/"),
        (
            "https://bucket.s3.us-east-1.amazonaws.com/kmeans_batch_example/input",
            "https://s3.us-east-1.amazonaws.com/bucket/kmeans_batch_example/output",
            "s3://bucket/kmeans_batch_example/input",
            "s3://bucket/kmeans_batch_example/output",
        ),
    ],
)
def test_seed_request_with_other_location_forms(input_location: str, output_location: str, input_uri: str, output_uri: str) -> None:
    job = parse_transform_job(seed_request(input_location, output_location))
    assert (job.input.uri, job.output.output_path) == (input_uri, output_uri)
    assert job.request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == input_location
    assert job.request["TransformOutput"]["S3OutputPath"] == output_location


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = parse_transform_job(seed_request("in/", "out"))
    assert (job.input.uri, job.output.output_path) == (f"file://{tmp_path}/in/", f"file://{tmp_path}/out")


def test_request_is_a_copy_as_sent() -> None:
    request = seed_request()
    job = parse_transform_job(request)
    request["TransformInput"]["ContentType"] = "changed"
    assert job.request["TransformInput"]["ContentType"] == "text/csv"


def test_minimal_request_defaults() -> None:
    request = with_changes(MaxConcurrentTransforms=..., MaxPayloadInMB=..., BatchStrategy=...)
    del request["TransformInput"]["ContentType"], request["TransformInput"]["SplitType"], request["TransformInput"]["CompressionType"]
    job = parse_transform_job(request)
    assert (job.max_concurrent_transforms, job.max_payload_mb, job.batch_strategy) == (None, None, None)
    assert (job.input.content_type, job.input.split_type, job.input.compression) == (None, "None", "None")
    assert "MaxPayloadInMB" not in job.request


def test_all_optional_members_are_kept() -> None:
    request = with_changes(
        ModelClientConfig={"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 0},
        Environment={"MODEL_SERVER_WORKERS": "2", "_X": ""},
        TransformOutput__Accept="text/csv",
        TransformOutput__AssembleWith="Line",
        TransformOutput__KmsKeyId="alias/my-key",
        TransformResources__VolumeKmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abc-123",
        TransformResources__TransformAmiVersion="al2-ami-sagemaker-batch-gpu-535",
        ExperimentConfig={"ExperimentName": "exp-1", "TrialName": "trial-1", "RunName": "run1"},
        DataCaptureConfig={"DestinationS3Uri": "s3://bucket/capture/", "KmsKeyId": "key-1", "GenerateInferenceId": True},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    job = parse_transform_job(request)
    assert (job.model_client.invocations_timeout_seconds, job.model_client.invocations_max_retries) == (3600, 0)
    assert job.environment == {"MODEL_SERVER_WORKERS": "2", "_X": ""}
    assert (job.output.accept, job.output.assemble_with, job.output.kms_key_id) == ("text/csv", "Line", "alias/my-key")
    assert job.resources.volume_kms_key_id == "arn:aws:kms:us-east-1:123456789012:key/abc-123"
    assert job.data_capture is not None
    assert (job.data_capture.destination_uri, job.data_capture.kms_key_id, job.data_capture.generate_inference_id) == ("s3://bucket/capture/", "key-1", True)
    assert job.tags == [{"Key": "team", "Value": "ml"}]


# -- names -------------------------------------------------------------------------------------


def test_name_too_long() -> None:
    name = "a" + "-" * 62 + "a"  # 64 characters that still match the pattern
    assert one_error(with_changes(TransformJobName=name)) == (
        f"1 validation error detected: Value '{name}' at 'transformJobName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63"
    )


def test_name_too_long_and_off_pattern_gives_two_errors_joined() -> None:
    name = "a" * 64
    assert error_message(with_changes(TransformJobName=name)) == (
        f"2 validation errors detected: Value '{name}' at 'transformJobName' failed to satisfy constraint: "
        f"Member must have length less than or equal to 63; Value '{name}' at 'transformJobName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    )


@pytest.mark.parametrize("name", ["my_job", "-job", "job-", "job.1", "job 1", ""])
def test_name_off_pattern(name: str) -> None:
    message = error_message(with_changes(TransformJobName=name))
    assert f"Value '{name}' at 'transformJobName' failed to satisfy constraint: Member must" in message


@pytest.mark.parametrize("name", ["a", "A1", "job--1", "a" * 63])
def test_good_names(name: str) -> None:
    assert parse_transform_job(with_changes(TransformJobName=name)).name == name


def test_model_name_empty() -> None:
    assert one_error(with_changes(ModelName="")) == (
        "1 validation error detected: Value '' at 'modelName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"
    )


def test_several_errors_are_collected_in_request_order() -> None:
    request = with_changes(
        TransformJobName="bad_name",
        BatchStrategy="Multi",
        TransformResources__InstanceCount=0,
        TransformInput__SplitType="Lines",
    )
    assert error_message(request) == (
        "4 validation errors detected: "
        "Value 'bad_name' at 'transformJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}; "
        "Value 'Multi' at 'batchStrategy' failed to satisfy constraint: Member must satisfy enum value set: [MultiRecord, SingleRecord]; "
        "Value 'Lines' at 'transformInput.splitType' failed to satisfy constraint: Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]; "
        "Value '0' at 'transformResources.instanceCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
    )


def test_missing_nested_required_members() -> None:
    request = with_changes(TransformInput={"DataSource": {"S3DataSource": {}}}, TransformOutput={})
    assert error_message(request) == (
        "3 validation errors detected: "
        "Value null at 'transformInput.dataSource.s3DataSource.s3DataType' failed to satisfy constraint: Member must not be null; "
        "Value null at 'transformInput.dataSource.s3DataSource.s3Uri' failed to satisfy constraint: Member must not be null; "
        "Value null at 'transformOutput.s3OutputPath' failed to satisfy constraint: Member must not be null"
    )


def test_wrong_types_and_unknown_members() -> None:
    request = with_changes(TransformResources__InstanceCount="1", MaxPayloadInMB=6.5, Extra=True)
    message = error_message(request)
    assert message.startswith("3 validation errors detected: ")
    assert "Value '6.5' at 'maxPayloadInMB' failed to satisfy constraint: Member must be an integer" in message
    assert "Value '1' at 'transformResources.instanceCount' failed to satisfy constraint: Member must be an integer" in message
    assert "Value 'true' at 'extra' failed to satisfy constraint: Member must be one of the known members of CreateTransformJobRequest: [" in message


def test_not_an_object() -> None:
    assert error_message("{}") == "The request body must be a JSON object"  # type: ignore[arg-type]


# -- resources ---------------------------------------------------------------------------------


@pytest.mark.parametrize("instance_type", [*INSTANCE_TYPES, "local", "local_gpu"])
def test_every_botocore_instance_type_and_local(instance_type: str) -> None:
    assert parse_transform_job(with_changes(TransformResources__InstanceType=instance_type)).resources.instance_type == instance_type


@pytest.mark.parametrize("instance_type", ["local_cpu", "ml.m4.huge", "ML.M4.XLARGE", ""])
def test_unknown_instance_types(instance_type: str) -> None:
    message = one_error(with_changes(TransformResources__InstanceType=instance_type))
    assert message.startswith(
        f"1 validation error detected: Value '{instance_type}' at 'transformResources.instanceType' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{INSTANCE_TYPES[0]}, "
    )
    assert message.endswith(f", {INSTANCE_TYPES[-1]}, local, local_gpu]")


@pytest.mark.parametrize(
    ("count", "rule"),
    [
        (0, "Member must have value greater than or equal to 1"),
        (-3, "Member must have value greater than or equal to 1"),
        (101, "Member must have value less than or equal to 100"),
    ],
)
def test_instance_count_limits(count: int, rule: str) -> None:
    assert one_error(with_changes(TransformResources__InstanceCount=count)) == (
        f"1 validation error detected: Value '{count}' at 'transformResources.instanceCount' failed to satisfy constraint: {rule}"
    )


@pytest.mark.parametrize("count", [1, 100])
def test_instance_count_bounds_accepted(count: int) -> None:
    assert parse_transform_job(with_changes(TransformResources__InstanceCount=count)).resources.instance_count == count


@pytest.mark.parametrize(
    ("member", "value", "path", "rule"),
    [
        ("TransformResources__VolumeKmsKeyId", "key id", "transformResources.volumeKmsKeyId", "Member must satisfy regular expression pattern: [a-zA-Z0-9:/_-]*"),
        ("TransformOutput__KmsKeyId", "key!", "transformOutput.kmsKeyId", "Member must satisfy regular expression pattern: [a-zA-Z0-9:/_-]*"),
        ("TransformResources__TransformAmiVersion", "al2--x", "transformResources.transformAmiVersion", "Member must satisfy regular expression pattern: [a-zA-Z0-9]+(-[a-zA-Z0-9]+)*"),
        ("TransformInput__CompressionType", "gzip", "transformInput.compressionType", "Member must satisfy enum value set: [None, Gzip]"),
        ("TransformOutput__AssembleWith", "Lines", "transformOutput.assembleWith", "Member must satisfy enum value set: [None, Line]"),
        ("TransformInput__ContentType", "x" * 257, "transformInput.contentType", "Member must have length less than or equal to 256"),
        ("ExperimentConfig", {"ExperimentName": "my_experiment"}, "experimentConfig.experimentName", "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}"),
    ],
)
def test_model_constraints_of_other_members(member: str, value: Any, path: str, rule: str) -> None:
    message = one_error(with_changes(**{member: value}))
    assert f"at '{path}' failed to satisfy constraint: {rule}" in message


# -- payload and concurrency -------------------------------------------------------------------


def test_max_payload_above_100() -> None:
    assert one_error(with_changes(MaxConcurrentTransforms=..., MaxPayloadInMB=101)) == (
        "1 validation error detected: Value '101' at 'maxPayloadInMB' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )


def test_max_payload_negative() -> None:
    assert one_error(with_changes(MaxPayloadInMB=-1)) == (
        "1 validation error detected: Value '-1' at 'maxPayloadInMB' failed to satisfy constraint: "
        "Member must have value greater than or equal to 0"
    )


@pytest.mark.parametrize(
    ("concurrent", "payload"),
    [(1, 100), (10, 10), (100, 1), (0, 100), (None, 100), (50, 0), (16, ...), (4, 25)],
)
def test_concurrency_times_payload_within_100(concurrent: int | None, payload: int | None) -> None:
    request = with_changes(MaxConcurrentTransforms=... if concurrent is None else concurrent, MaxPayloadInMB=payload)
    parse_transform_job(request)


def test_concurrency_times_payload_above_100() -> None:
    assert error_message(with_changes(MaxConcurrentTransforms=11, MaxPayloadInMB=10)) == (
        "MaxConcurrentTransforms (11) × MaxPayloadInMB (10) is 110: the product of MaxConcurrentTransforms "
        "and MaxPayloadInMB must not exceed 100 MB"
    )


def test_concurrency_times_default_payload_above_100() -> None:
    assert error_message(with_changes(MaxConcurrentTransforms=17, MaxPayloadInMB=...)) == (
        "MaxConcurrentTransforms (17) × MaxPayloadInMB (6 (the default)) is 102: the product of "
        "MaxConcurrentTransforms and MaxPayloadInMB must not exceed 100 MB"
    )


def test_product_rule_is_not_repeated_for_an_invalid_payload() -> None:
    message = error_message(with_changes(MaxConcurrentTransforms=50, MaxPayloadInMB=200))
    assert message.startswith("1 validation error detected: Value '200' at 'maxPayloadInMB'")


def test_product_error_joins_other_errors() -> None:
    message = error_message(with_changes(MaxConcurrentTransforms=20, ModelName="bad_name"))
    assert message.startswith("2 validation errors detected: Value 'bad_name' at 'modelName'")
    assert message.endswith("; MaxConcurrentTransforms (20) × MaxPayloadInMB (6) is 120: the product of MaxConcurrentTransforms and MaxPayloadInMB must not exceed 100 MB")


# -- model client config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, (600, 3)),
        ({"InvocationsTimeoutInSeconds": 1}, (1, 3)),
        ({"InvocationsMaxRetries": 0}, (600, 0)),
        ({"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 3}, (3600, 3)),
    ],
)
def test_model_client_config(config: dict[str, int], expected: tuple[int, int]) -> None:
    client = parse_transform_job(with_changes(ModelClientConfig=config)).model_client
    assert (client.invocations_timeout_seconds, client.invocations_max_retries) == expected


@pytest.mark.parametrize(
    ("member", "value", "rule"),
    [
        ("InvocationsTimeoutInSeconds", 0, "Member must have value greater than or equal to 1"),
        ("InvocationsTimeoutInSeconds", 3601, "Member must have value less than or equal to 3600"),
        ("InvocationsMaxRetries", -1, "Member must have value greater than or equal to 0"),
        ("InvocationsMaxRetries", 4, "Member must have value less than or equal to 3"),
    ],
)
def test_model_client_config_limits(member: str, value: int, rule: str) -> None:
    path = "modelClientConfig." + member[0].lower() + member[1:]
    assert one_error(with_changes(ModelClientConfig={member: value})) == (
        f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {rule}"
    )


# -- environment -------------------------------------------------------------------------------


def test_environment_limits() -> None:
    assert parse_transform_job(with_changes(Environment={f"K{index}": "v" * 10240 for index in range(16)})).environment["K0"] == "v" * 10240
    message = one_error(with_changes(Environment={f"K{index}": "v" for index in range(17)}))
    assert message.endswith("at 'environment' failed to satisfy constraint: Member must have length less than or equal to 16")


@pytest.mark.parametrize(
    ("environment", "rule"),
    [
        ({"1ABC": "v"}, "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]{0,1023}]"),
        ({"A-B": "v"}, "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]{0,1023}]"),
        ({"K" * 1025: "v"}, "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]{0,1023}]"),
        ({"K": "v" * 10241}, "Map value must satisfy constraint: [Member must have length less than or equal to 10240]"),
        ({"K": 1}, "Map value must satisfy constraint: [Member must be a string]"),
    ],
)
def test_environment_entries(environment: dict[str, Any], rule: str) -> None:
    assert one_error(with_changes(Environment=environment)).endswith(f"at 'environment' failed to satisfy constraint: {rule}")


# -- input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", ["AugmentedManifestFile", "Converse"])
def test_training_only_data_types(data_type: str) -> None:
    assert error_message(with_changes(TransformInput__DataSource={"S3DataSource": {"S3DataType": data_type, "S3Uri": "s3://b/in/"}})) == (
        f"S3DataType '{data_type}' at 'transformInput.dataSource.s3DataSource.s3DataType' is not supported for batch "
        "transform; use S3Prefix or ManifestFile"
    )


def test_manifest_file() -> None:
    request = with_changes(TransformInput__DataSource={"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b/in.manifest"}})
    assert parse_transform_job(request).input.data_type == "ManifestFile"


def test_unknown_data_type() -> None:
    message = one_error(with_changes(TransformInput__DataSource={"S3DataSource": {"S3DataType": "S3Object", "S3Uri": "s3://b/in/"}}))
    assert message.endswith("Member must satisfy enum value set: [ManifestFile, S3Prefix, AugmentedManifestFile, Converse]")


@pytest.mark.parametrize("location", ["http://bucket/in", "s3:/bucket/in", "gs://bucket/in"])
def test_bad_input_location(location: str) -> None:
    assert one_error(seed_request(input_location=location)) == (
        f"1 validation error detected: Value '{location}' at 'transformInput.dataSource.s3DataSource.s3Uri' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*) or be a local path "
        "(file:///absolute/path or a path)"
    )


def test_bad_output_url_host() -> None:
    assert one_error(seed_request(output_location="https://storage.example.com/bucket/out")) == (
        "1 validation error detected: Value 'https://storage.example.com/bucket/out' at 'transformOutput.s3OutputPath' failed "
        "to satisfy constraint: Member must be an S3 URL: https://<bucket>.s3.<region>.amazonaws.com/<key> or "
        "https://s3.<region>.amazonaws.com/<bucket>/<key>"
    )


# -- data capture ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("s3://bucket/capture", "s3://bucket/capture"),
        ("https://bucket.s3.amazonaws.com/capture/", "s3://bucket/capture/"),
        ("file:///var/capture/", "file:///var/capture/"),
        ("/var/capture", "file:///var/capture"),
    ],
)
def test_data_capture_destination_forms(destination: str, expected: str) -> None:
    capture = parse_transform_job(with_changes(DataCaptureConfig={"DestinationS3Uri": destination})).data_capture
    assert capture is not None and capture.destination_uri == expected and capture.generate_inference_id is False


def test_data_capture_rules() -> None:
    assert error_message(with_changes(DataCaptureConfig={"GenerateInferenceId": "yes"})) == (
        "2 validation errors detected: "
        "Value null at 'dataCaptureConfig.destinationS3Uri' failed to satisfy constraint: Member must not be null; "
        "Value 'yes' at 'dataCaptureConfig.generateInferenceId' failed to satisfy constraint: Member must be a boolean"
    )


# -- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        {"Key": "프로젝트", "Value": "Ünïcödé 値 ١٢٣"},
        {"Key": "aws:cost-center/ID_1", "Value": "a.b:c/d=e+f-g@h"},
        {"Key": "k", "Value": ""},
        {"Key": "ü" * 128, "Value": "v" * 256},
    ],
)
def test_good_tags(tag: dict[str, str]) -> None:
    assert parse_transform_job(with_changes(Tags=[tag])).tags == [tag]


@pytest.mark.parametrize(
    ("tag", "path", "rule"),
    [
        ({"Key": "", "Value": "v"}, "tags.1.member.key", "Member must have length greater than or equal to 1"),
        ({"Key": "k" * 129, "Value": "v"}, "tags.1.member.key", "Member must have length less than or equal to 128"),
        ({"Key": "k", "Value": "v" * 257}, "tags.1.member.value", "Member must have length less than or equal to 256"),
        ({"Key": "k!", "Value": "v"}, "tags.1.member.key", "Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"),
        ({"Key": "k", "Value": "a;b"}, "tags.1.member.value", "Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"),
        ({"Key": "k"}, "tags.1.member.value", "Member must not be null"),
    ],
)
def test_bad_tags(tag: dict[str, str], path: str, rule: str) -> None:
    assert f"at '{path}' failed to satisfy constraint: {rule}" in one_error(with_changes(Tags=[tag]))


def test_tag_count_and_unique_keys() -> None:
    assert parse_transform_job(with_changes(Tags=[{"Key": f"k{index}", "Value": "v"} for index in range(50)])).tags[49]["Key"] == "k49"
    message = one_error(with_changes(Tags=[{"Key": f"k{index}", "Value": "v"} for index in range(51)]))
    assert message.endswith("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
    assert error_message(with_changes(Tags=[{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}])) == (
        "Tag keys must be unique: key 'team' at 'tags.2.member.key' appears more than once in tags"
    )


# -- data processing (filters are parsed by conveyor.sagemaker.jsonpath.parse_filter) ----------------


def csv_join_request(**processing: str) -> dict[str, Any]:
    """Spec §5.4 example 4: CSV in and out, split and assembled by line."""
    request = with_changes(TransformOutput__Accept="text/csv", TransformOutput__AssembleWith="Line")
    request["DataProcessing"] = dict(processing)
    return request


def test_data_processing_id_and_prediction_example() -> None:
    job = parse_transform_job(csv_join_request(InputFilter="$[1:]", JoinSource="Input", OutputFilter="$[0,-1]"))
    processing = job.data_processing
    assert processing.input_filter is not None and processing.input_filter.expression == "$[1:]"
    assert processing.output_filter is not None and processing.output_filter.expression == "$[0,-1]"
    assert processing.join_source == "Input"
    assert job.request["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}


def test_data_processing_defaults_are_identity() -> None:
    request = with_changes(TransformInput__ContentType="image/png", TransformInput__SplitType="None")
    request["DataProcessing"] = {"InputFilter": "$", "JoinSource": "None", "OutputFilter": "$"}
    assert parse_transform_job(request).data_processing == DataProcessing()


def test_data_processing_join_everything() -> None:
    processing = parse_transform_job(csv_join_request(JoinSource="Input")).data_processing
    assert (processing.input_filter, processing.output_filter, processing.join_source) == (None, None, "Input")


def test_data_processing_json_filters() -> None:
    request = with_changes(TransformInput__ContentType="application/json", TransformInput__SplitType="None")
    request["TransformOutput"]["Accept"] = "application/json; charset=utf-8"
    request["DataProcessing"] = {"InputFilter": "$.features", "OutputFilter": "$['id','SageMakerOutput']", "JoinSource": "Input"}
    processing = parse_transform_job(request).data_processing
    assert processing.input_filter is not None and processing.input_filter.expression == "$.features"


def test_data_processing_unsupported_content_types() -> None:
    request = with_changes(TransformInput__ContentType="text/plain", TransformOutput__Accept="image/png")
    request["DataProcessing"] = {"InputFilter": "$[1:]"}
    assert error_message(request) == (
        "2 validation errors detected: "
        "ContentType 'text/plain' at 'transformInput.contentType' is not supported with DataProcessing (InputFilter, "
        "OutputFilter or JoinSource Input): ContentType must be one of text/csv, application/json, application/jsonlines; "
        "Accept 'image/png' at 'transformOutput.accept' is not supported with DataProcessing (InputFilter, OutputFilter "
        "or JoinSource Input): Accept must be one of text/csv, application/json, application/jsonlines"
    )


def test_data_processing_join_needs_accept_equal_to_content_type() -> None:
    request = csv_join_request(JoinSource="Input")
    request["TransformOutput"]["Accept"] = "application/jsonlines"
    assert error_message(request) == (
        "Accept 'application/jsonlines' at 'transformOutput.accept' must equal ContentType 'text/csv' when JoinSource is Input"
    )
    del request["TransformOutput"]["Accept"]
    assert error_message(request) == "Accept (not given) at 'transformOutput.accept' must equal ContentType 'text/csv' when JoinSource is Input"


def test_data_processing_join_needs_assemble_with_equal_to_split_type() -> None:
    request = with_changes(TransformInput__ContentType="application/jsonlines", TransformOutput__Accept="application/jsonlines")
    request["DataProcessing"] = {"JoinSource": "Input"}
    assert error_message(request) == "AssembleWith 'None' at 'transformOutput.assembleWith' must equal SplitType 'Line' when JoinSource is Input"


def test_data_processing_csv_needs_line_split_and_assembly() -> None:
    request = with_changes(TransformInput__SplitType="None", TransformOutput__Accept="text/csv")
    request["DataProcessing"] = {"InputFilter": "$[1:]"}
    assert error_message(request) == (
        "2 validation errors detected: "
        "SplitType 'None' at 'transformInput.splitType' must be Line when ContentType is text/csv and DataProcessing is used; "
        "AssembleWith 'None' at 'transformOutput.assembleWith' must be Line when Accept is text/csv and DataProcessing is used"
    )


def test_data_processing_bad_filter_is_refused_at_create_time() -> None:
    request = csv_join_request(InputFilter="$.features")  # names do not apply to CSV rows
    with pytest.raises(ValidationException) as caught:
        parse_transform_job(request)
    assert [error.path for error in caught.value.errors] == ["dataProcessing.inputFilter"]
    assert caught.value.message.startswith('Invalid InputFilter: "$.features".')


def test_data_processing_output_filter_is_checked_for_accept() -> None:
    request = with_changes(TransformInput__ContentType="application/jsonlines", TransformOutput__Accept="text/csv", TransformOutput__AssembleWith="Line")
    request["DataProcessing"] = {"OutputFilter": "$.label"}
    with pytest.raises(ValidationException) as caught:
        parse_transform_job(request)
    assert [error.path for error in caught.value.errors] == ["dataProcessing.outputFilter"]


def test_data_processing_filter_errors_join_other_errors() -> None:
    request = csv_join_request(InputFilter="[1:]", JoinSource="Input")
    request["ModelName"] = "bad_name"
    message = error_message(request)
    assert message.startswith("2 validation errors detected: Value 'bad_name' at 'modelName'")
    assert '; Invalid InputFilter: "[1:]".' in message


def test_data_processing_filter_too_long_is_not_parsed() -> None:
    expression = "$[" + ",".join(["1"] * 31) + "]"
    assert len(expression) == 64
    assert one_error(csv_join_request(InputFilter=expression)) == (
        f"1 validation error detected: Value '{expression}' at 'dataProcessing.inputFilter' failed to satisfy "
        "constraint: Member must have length less than or equal to 63"
    )


def test_data_processing_join_source_enum() -> None:
    assert one_error(csv_join_request(JoinSource="Output")).endswith(
        "at 'dataProcessing.joinSource' failed to satisfy constraint: Member must satisfy enum value set: [Input, None]"
    )


def test_data_processing_rules_skip_values_already_reported() -> None:
    request = csv_join_request(JoinSource="Input")
    request["TransformInput"]["SplitType"] = "Lines"
    message = one_error(request)
    assert "at 'transformInput.splitType' failed to satisfy constraint: Member must satisfy enum value set" in message


def test_data_processing_original_request_kept() -> None:
    request = csv_join_request(InputFilter="$[1:]", JoinSource="Input")
    assert copy.deepcopy(request) == parse_transform_job(request).request


def test_data_processing_invalid_content_type_is_reported_once() -> None:
    request = csv_join_request(JoinSource="Input")
    request["TransformInput"]["ContentType"] = "t" * 257
    assert one_error(request).endswith("at 'transformInput.contentType' failed to satisfy constraint: Member must have length less than or equal to 256")


def test_data_processing_refuses_binary_split_types() -> None:
    request = with_changes(TransformInput__SplitType="RecordIO", TransformOutput__AssembleWith="None", DataProcessing={"InputFilter": "$[1:]"})
    message = error_message(request)
    assert "SplitType 'RecordIO' at 'transformInput.splitType' cannot be used with DataProcessing" in message


def test_inference_ids_need_a_supported_output_type() -> None:
    request = with_changes(
        TransformOutput__Accept="application/x-npy",
        DataCaptureConfig={"DestinationS3Uri": "s3://bucket/capture", "GenerateInferenceId": True},
    )
    message = error_message(request)
    assert "GenerateInferenceId at 'dataCaptureConfig.generateInferenceId' needs an output of" in message
    assert "'application/x-npy'" in message


def test_inference_ids_on_csv_need_line_split() -> None:
    request = with_changes(
        TransformInput__SplitType="None",
        DataCaptureConfig={"DestinationS3Uri": "s3://bucket/capture", "GenerateInferenceId": True},
    )
    assert "with text/csv output needs SplitType Line" in error_message(request)


def test_inference_ids_on_csv_lines_are_accepted() -> None:
    request = with_changes(DataCaptureConfig={"DestinationS3Uri": "s3://bucket/capture", "GenerateInferenceId": True})
    assert parse_transform_job(request).data_capture.generate_inference_id is True
