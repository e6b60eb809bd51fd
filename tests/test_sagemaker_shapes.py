"""Generic validation against botocore's SageMaker model, and the location forms (`sagemaker.shapes`,
`sagemaker.locations`)."""

from __future__ import annotations

import os

import botocore.session
import pytest

from conveyor.errors import FieldError, ValidationException
from conveyor.sagemaker import normalize_location
from conveyor.sagemaker.locations import LocationError, is_local, location_errors
from conveyor.sagemaker.shapes import (
    enum_values,
    full_match,
    input_shape,
    java_length,
    member_path,
    service_model,
    shape,
    unique_tag_key_errors,
    validate,
    validate_request,
)

BOTOCORE = botocore.session.get_session().get_service_model("sagemaker")


def messages(errors: list[FieldError]) -> list[str]:
    return [error.render() for error in errors]


# -- the model is botocore's -----------------------------------------------------------------


def test_model_is_the_installed_botocore_model() -> None:
    assert service_model().api_version == BOTOCORE.api_version
    assert enum_values("TransformInstanceType") == list(BOTOCORE.shape_for("TransformInstanceType").enum)
    assert enum_values("S3DataType") == ["ManifestFile", "S3Prefix", "AugmentedManifestFile", "Converse"]
    assert input_shape("CreateTransformJob").required_members == [
        "TransformJobName",
        "ModelName",
        "TransformInput",
        "TransformOutput",
        "TransformResources",
    ]


def test_service_model_is_loaded_once() -> None:
    assert service_model() is service_model()


@pytest.mark.parametrize(
    ("parent", "member", "expected"),
    [
        ("", "TransformJobName", "transformJobName"),
        ("transformInput.dataSource", "S3DataSource", "transformInput.dataSource.s3DataSource"),
        ("transformInput.dataSource.s3DataSource", "S3Uri", "transformInput.dataSource.s3DataSource.s3Uri"),
        ("", "MaxPayloadInMB", "maxPayloadInMB"),
        ("transformResources", "InstanceCount", "transformResources.instanceCount"),
    ],
)
def test_member_path_is_lower_camel_case(parent: str, member: str, expected: str) -> None:
    assert member_path(parent, member) == expected


# -- patterns and lengths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "job-1", True),
        ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "job-1-", False),  # full match, not search
        ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "x job", False),
        ("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)", "Ünïcödé 値 ١٢٣", True),
        ("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)", "semi;colon", False),
        ("[\\S\\s]*", "line\nbreak", True),
        (".*", "line\nbreak", False),  # `.` does not match a line terminator, as in Java
    ],
)
def test_full_match_uses_java_like_semantics(pattern: str, value: str, matches: bool) -> None:
    assert full_match(pattern, value) is matches


def test_length_counts_utf16_code_units_as_the_service_does() -> None:
    assert java_length("abc") == 3
    assert java_length("é") == 1
    assert java_length("😀") == 2


# -- generic checks through validate_request ------------------------------------------------


def test_missing_required_members_are_null() -> None:
    errors = validate_request("CreateTransformJob", {})
    assert messages(errors) == [
        f"Value null at '{path}' failed to satisfy constraint: Member must not be null"
        for path in ("transformJobName", "modelName", "transformInput", "transformOutput", "transformResources")
    ]
    assert str(ValidationException(errors)).startswith("5 validation errors detected: Value null at 'transformJobName'")


def test_nested_required_members_use_dotted_paths() -> None:
    errors = validate(
        {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/k"}}}, input_shape("CreateTransformJob").members["TransformInput"], "transformInput"
    )
    assert messages(errors) == [
        "Value null at 'transformInput.dataSource.s3DataSource.s3DataType' failed to satisfy constraint: Member must not be null"
    ]


@pytest.mark.parametrize(
    ("shape_name", "value", "rule"),
    [
        ("TransformInstanceCount", "2", "Member must be an integer"),
        ("TransformInstanceCount", True, "Member must be an integer"),
        ("TransformInstanceCount", 1.5, "Member must be an integer"),
        ("TransformJobName", 7, "Member must be a string"),
        ("Boolean", "true", "Member must be a boolean"),
        ("TransformInput", ["x"], "Member must be a structure (a JSON object)"),
        ("TagList", {"Key": "k"}, "Member must be a list (a JSON array)"),
        ("TransformEnvironmentMap", "A=1", "Member must be a map (a JSON object)"),
    ],
)
def test_wrong_json_types_name_the_member(shape_name: str, value: object, rule: str) -> None:
    errors = validate(value, shape(shape_name), "some.member")
    assert [(error.path, error.rule) for error in errors] == [("some.member", rule)]


def test_integer_limits_read_from_the_model() -> None:
    client = shape("ModelClientConfig")
    errors = validate({"InvocationsTimeoutInSeconds": 0, "InvocationsMaxRetries": 4}, client, "modelClientConfig")
    assert messages(errors) == [
        "Value '0' at 'modelClientConfig.invocationsTimeoutInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 1",
        "Value '4' at 'modelClientConfig.invocationsMaxRetries' failed to satisfy constraint: Member must have value less than or equal to 3",
    ]


def test_string_breaking_length_and_pattern_reports_both_in_that_order() -> None:
    errors = validate("-" * 64, shape("TransformJobName"), "transformJobName")
    assert [error.rule for error in errors] == [
        "Member must have length less than or equal to 63",
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
    ]


def test_enum_rule_lists_the_model_values() -> None:
    errors = validate("Lines", shape("SplitType"), "transformInput.splitType")
    assert messages(errors) == [
        "Value 'Lines' at 'transformInput.splitType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]"
    ]


def test_unknown_members_are_named() -> None:
    errors = validate({"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/"}}, "SpliType": "Line"}, shape("TransformInput"), "transformInput")
    assert len(errors) == 1
    assert errors[0].path == "transformInput.spliType"
    assert errors[0].rule == "Member must be one of the known members of TransformInput: [DataSource, ContentType, CompressionType, SplitType]"


def test_null_optional_member_is_absent() -> None:
    assert validate({"ContentType": None, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/"}}}, shape("TransformInput"), "t") == []


def test_list_members_are_one_based_with_member() -> None:
    errors = validate([{"Key": "a", "Value": "1"}, {"Key": "", "Value": "2"}, None], shape("TagList"), "tags")
    assert messages(errors) == [
        "Value '' at 'tags.2.member.key' failed to satisfy constraint: Member must have length greater than or equal to 1",
        "Value null at 'tags.3.member' failed to satisfy constraint: Member must not be null",
    ]


def test_list_and_map_sizes() -> None:
    tags = [{"Key": f"k{index}", "Value": ""} for index in range(51)]
    assert [error.rule for error in validate(tags, shape("TagList"), "tags")] == ["Member must have length less than or equal to 50"]
    environment = {f"K{index}": "v" for index in range(17)}
    assert [error.rule for error in validate(environment, shape("TransformEnvironmentMap"), "environment")] == [
        "Member must have length less than or equal to 16"
    ]


def test_map_key_and_value_errors_show_the_entry() -> None:
    environment = {"GOOD": "x", "BAD-KEY": "v", "LONG": "x" * 10241, "NUMBER": 5}
    assert messages(validate(environment, shape("TransformEnvironmentMap"), "environment")) == [
        "Value '{BAD-KEY=v}' at 'environment' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]{0,1023}]",
        f"Value '{{LONG={'x' * 2042}... (10248 characters)' at 'environment' failed to satisfy constraint: "  # cut
        "Map value must satisfy constraint: [Member must have length less than or equal to 10240]",
        "Value '{NUMBER=5}' at 'environment' failed to satisfy constraint: Map value must satisfy constraint: [Member must be a string]",
    ]


def test_request_must_be_an_object() -> None:
    with pytest.raises(ValidationException) as caught:
        raise ValidationException(validate_request("CreateTransformJob", ["not", "an", "object"]))
    assert caught.value.message == "The request body must be a JSON object"


def test_repeated_tag_keys() -> None:
    tags = [{"Key": "team", "Value": "a"}, {"Key": "Team", "Value": "b"}, {"Key": "team", "Value": "c"}]
    assert messages(unique_tag_key_errors(tags, "tags")) == [
        "Tag keys must be unique: key 'team' at 'tags.3.member.key' appears more than once in tags"
    ]


# -- locations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://bucket/prefix/key.csv", "s3://bucket/prefix/key.csv"),
        ("s3://bucket/prefix/", "s3://bucket/prefix/"),
        ("s3://bucket", "s3://bucket/"),
        ("https://bucket.s3.amazonaws.com/in/data.csv", "s3://bucket/in/data.csv"),
        ("https://bucket.s3.us-west-2.amazonaws.com/in/", "s3://bucket/in/"),
        ("https://my.dotted.bucket.s3.eu-west-1.amazonaws.com/k", "s3://my.dotted.bucket/k"),
        ("https://bucket.s3-us-west-2.amazonaws.com/k", "s3://bucket/k"),
        ("https://bucket.s3.dualstack.us-east-1.amazonaws.com/k", "s3://bucket/k"),
        ("https://bucket.s3.cn-north-1.amazonaws.com.cn/k", "s3://bucket/k"),
        ("https://s3.amazonaws.com/bucket/in/data.csv", "s3://bucket/in/data.csv"),
        ("https://s3.us-west-2.amazonaws.com/bucket/in/", "s3://bucket/in/"),
        ("https://s3-eu-west-1.amazonaws.com/bucket/k", "s3://bucket/k"),
        ("https://bucket.s3.amazonaws.com/a%20b/c+d%2Be.csv", "s3://bucket/a b/c d+e.csv"),
        ("https://bucket.s3.amazonaws.com", "s3://bucket/"),
        ("file:///data/in/", "file:///data/in/"),
        ("file:///data/in/../x.csv", "file:///data/x.csv"),
        ("file://localhost/data/in", "file:///data/in"),
        ("/data/in", "file:///data/in"),
        ("/data//in/", "file:///data/in/"),
    ],
)
def test_normalize_location(value: str, expected: str) -> None:
    assert normalize_location(value) == expected


def test_relative_and_home_paths_resolve(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert normalize_location("data/in/") == f"file://{tmp_path}/data/in/"
    assert normalize_location("./model.tar.gz") == f"file://{tmp_path}/model.tar.gz"
    assert normalize_location("~/x") == f"file://{tmp_path}/home/x"
    assert is_local(normalize_location("data")) and not is_local(normalize_location("s3://b/k"))


@pytest.mark.parametrize(
    ("value", "rule_start"),
    [
        ("", "Member must be an S3 URI (s3://<bucket>/<key>)"),
        ("s3:/bucket/key", "Member must be an S3 URI"),
        ("ftp://host/key", "Member must be an S3 URI"),
        ("s3://", "Member must name a bucket"),
        ("http://bucket.s3.amazonaws.com/k", "Member must be an S3 URI"),
        ("https://example.com/bucket/key", "Member must be an S3 URL: https://<bucket>.s3.<region>.amazonaws.com/<key>"),
        ("https://s3.amazonaws.com/", "Member must name a bucket"),
        ("https://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc", "Member must be an S3 URL without a query string"),
        ("file://host/data", "Member must be a file URI with an absolute path"),
    ],
)
def test_unusable_locations(value: str, rule_start: str) -> None:
    with pytest.raises(LocationError) as caught:
        normalize_location(value)
    assert str(caught.value).startswith(rule_start)


def test_location_check_extends_botocores_pattern_with_local_paths() -> None:
    s3_uri = shape("S3Uri")
    assert location_errors("s3://b/k", s3_uri, "p") == []
    assert location_errors("file:///in", s3_uri, "p") == []
    assert location_errors(os.path.join("relative", "dir"), s3_uri, "p") == []
    assert messages(location_errors("http://bucket/key", s3_uri, "transformOutput.s3OutputPath")) == [
        "Value 'http://bucket/key' at 'transformOutput.s3OutputPath' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*) "
        "or be a local path (file:///absolute/path or a path)"
    ]
    assert messages(location_errors("s3://b/" + "k" * 1020, s3_uri, "p")) == [
        f"Value 's3://b/{'k' * 1020}' at 'p' failed to satisfy constraint: Member must have length less than or equal to 1024"
    ]
