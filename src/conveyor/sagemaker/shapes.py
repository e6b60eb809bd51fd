"""Validating a request against botocore's own SageMaker service model (docs/semantics.md, decision 22).

Enums, lengths, value ranges, patterns, required members and types are read from the model that
the installed botocore ships, so Conveyor accepts exactly what the installed clients send and
refuses the rest with SageMaker's generic wording:

    Value 'x' at 'transformInput.contentType' failed to satisfy constraint: Member must …

Paths are lowerCamelCase member names joined by dots; list members are `tags.1.member.key`
(1-based, as AWS writes them); a map's key or value errors are reported at the map's path.

Beyond what SageMaker checks server side, this module also refuses, as `ValidationException`
naming the member, two things a raw HTTP client can send but botocore never does:

- a JSON value of the wrong type (a string where an integer is expected, …). SageMaker answers
  these with a `SerializationException`; one exception family with the field named is easier to
  act on, and boto3 users never see the difference.
- an unknown member (a typo such as `SpliType`). SageMaker rejects these too (as a
  `SerializationException`); silently ignoring a misspelt option would run a different job than
  the one asked for.

JSON `null` for an optional member means "absent", as it does for SageMaker.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from functools import cached_property, lru_cache
from typing import Any, Callable, Mapping

import orjson
import regex

from conveyor.errors import FieldError

# A rule that replaces the generic constraint checks of one botocore shape (by shape name),
# called with a value already known to have the shape's JSON type.
Check = Callable[[Any, "Shape", str], list[FieldError]]

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "float": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "structure": "a structure (a JSON object)",
    "map": "a map (a JSON object)",
    "list": "a list (a JSON array)",
    "timestamp": "a timestamp",
    "blob": "a base64-encoded string",
}


class Shape:
    """One shape of a botocore service model, read from the model's JSON as botocore's own
    `botocore.model.Shape` reads it, for the parts that validation uses. Reading the JSON here
    spares a command botocore's import (a quarter of a second), which nothing else on a local
    job's path needs (docs/benchmarks.md, "Start-up")."""

    def __init__(self, name: str, model: "ServiceModel") -> None:
        self.name = name
        self._definition: dict[str, Any] = model.shapes[name]
        self._model = model
        self.type_name: str = self._definition["type"]
        self.metadata: dict[str, Any] = {key: self._definition[key] for key in ("min", "max", "pattern", "enum") if key in self._definition}

    @property
    def enum(self) -> list[str]:
        return self.metadata.get("enum", [])

    @cached_property
    def members(self) -> dict[str, Shape]:
        return {member: self._model.shape_for(target["shape"]) for member, target in self._definition.get("members", {}).items()}

    @property
    def required_members(self) -> list[str]:
        return list(self._definition.get("required", []))

    @property
    def member(self) -> Shape:
        return self._model.shape_for(self._definition["member"]["shape"])

    @property
    def key(self) -> Shape:
        return self._model.shape_for(self._definition["key"]["shape"])

    @property
    def value(self) -> Shape:
        return self._model.shape_for(self._definition["value"]["shape"])


class ServiceModel:
    """A service's `service-2.json` as botocore ships it: its operations' input shapes and its named shapes."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.api_version: str = document["metadata"]["apiVersion"]
        self.operations: dict[str, Any] = document["operations"]
        self.shapes: dict[str, Any] = document["shapes"]
        self._built: dict[str, Shape] = {}

    def shape_for(self, name: str) -> Shape:
        if name not in self._built:
            if name not in self.shapes:
                raise KeyError(f"the service model has no shape {name!r}")
            self._built[name] = Shape(name, self)
        return self._built[name]

    def input_shape(self, operation: str) -> Shape:
        return self.shape_for(self.operations[operation]["input"]["shape"])


@lru_cache(maxsize=None)
def service_model(service: str = "sagemaker") -> ServiceModel:
    """botocore's model of `service`, loaded once, found as botocore's loader finds it (AWS_DATA_PATH,
    then ~/.aws/models, then botocore's own data; the newest API version) without importing botocore."""
    return ServiceModel(orjson.loads(_read(_model_file(service))))


def _model_file(service: str) -> str:
    spec = importlib.util.find_spec("botocore")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("botocore is not installed; Conveyor reads SageMaker's API from its service model")
    roots = [path for path in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep) if path]
    roots += [os.path.expanduser(os.path.join("~", ".aws", "models")), os.path.join(list(spec.submodule_search_locations)[0], "data")]
    found: dict[str, str] = {}  # API version → the first root's file of it
    for root in roots:
        folder = os.path.join(root, service)
        if not os.path.isdir(folder):
            continue
        for version in os.listdir(folder):
            for name in ("service-2.json", "service-2.json.gz"):
                candidate = os.path.join(folder, version, name)
                if version not in found and os.path.isfile(candidate):
                    found[version] = candidate
    if not found:
        raise RuntimeError(f"botocore ships no model of {service!r} (searched {', '.join(roots)})")
    return found[max(found)]


def _read(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as compressed:
            return compressed.read()
    with open(path, "rb") as plain:
        return plain.read()


def input_shape(operation: str) -> Shape:
    """The request shape of one operation, e.g. `CreateTransformJob`."""
    return service_model().input_shape(operation)


def shape(name: str) -> Shape:
    """A named shape of the model, e.g. `TransformInstanceType`."""
    return service_model().shape_for(name)


def enum_values(shape_name: str) -> list[str]:
    """The enum of a string shape, in the model's order."""
    return list(shape(shape_name).enum)


def member_path(parent: str, member: str) -> str:
    """`transformInput` + `SplitType` → `transformInput.splitType` (SageMaker's message paths)."""
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


def full_match(pattern: str, value: str) -> bool:
    """Whether the whole value matches a model pattern (Java syntax, `\\p{L}` included)."""
    return _compiled(pattern).fullmatch(value) is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def java_length(value: str) -> int:
    """A string's length as the service counts it: UTF-16 code units, not code points."""
    return len(value.encode("utf-16-le")) // 2


def length_errors(value: Any, shape: Shape, path: str) -> list[FieldError]:
    """`min`/`max` of a string, list or map (all called "length" in SageMaker's wording)."""
    size = java_length(value) if isinstance(value, str) else len(value)
    errors = []
    maximum, minimum = shape.metadata.get("max"), shape.metadata.get("min")
    if maximum is not None and size > maximum:
        errors.append(FieldError(path, value, f"Member must have length less than or equal to {maximum}"))
    if minimum is not None and minimum > 0 and size < minimum:
        errors.append(FieldError(path, value, f"Member must have length greater than or equal to {minimum}"))
    return errors


def pattern_rule(pattern: str) -> str:
    return f"Member must satisfy regular expression pattern: {pattern}"


def enum_rule(values: list[str]) -> str:
    return f"Member must satisfy enum value set: [{', '.join(values)}]"


def string_rules(value: str, shape: Shape) -> list[str]:
    """The rules a string breaks, in SageMaker's order: length, pattern, enum."""
    rules = [error.rule for error in length_errors(value, shape, "")]
    pattern = shape.metadata.get("pattern")
    if pattern is not None and not full_match(pattern, value):
        rules.append(pattern_rule(pattern))
    if shape.enum and value not in shape.enum:
        rules.append(enum_rule(list(shape.enum)))
    return rules


def constraint_errors(value: Any, shape: Shape, path: str) -> list[FieldError]:
    """The generic constraint checks of a scalar value already of the right JSON type."""
    if shape.type_name == "string":
        return [FieldError(path, value, rule) for rule in string_rules(value, shape)]
    if shape.type_name in ("integer", "long", "float", "double"):
        errors = []
        maximum, minimum = shape.metadata.get("max"), shape.metadata.get("min")
        if maximum is not None and value > maximum:
            errors.append(FieldError(path, value, f"Member must have value less than or equal to {maximum}"))
        if minimum is not None and value < minimum:
            errors.append(FieldError(path, value, f"Member must have value greater than or equal to {minimum}"))
        return errors
    return []


def validate_request(operation: str, request: Any, *, checks: Mapping[str, Check] | None = None) -> list[FieldError]:
    """Every constraint of the model the request breaks (empty list: the request is valid).

    `checks` replaces the generic checks of the named shapes (S3 locations that also take local
    paths, the instance type that also takes `local`).
    """
    if not isinstance(request, dict):
        return [FieldError("", request, "", message="The request body must be a JSON object")]
    errors: list[FieldError] = []
    _validate(request, input_shape(operation), "", errors, checks or {})
    return errors


def validate(value: Any, shape: Shape, path: str, *, checks: Mapping[str, Check] | None = None) -> list[FieldError]:
    """Validate one value against one shape (the building block of `validate_request`)."""
    errors: list[FieldError] = []
    _validate(value, shape, path, errors, checks or {})
    return errors


def without_nulls(value: Any, shape: Shape) -> Any:
    """A valid `value` with its null structure members dropped, at any depth: what a handler
    reads with `.get(name, default)` then sees the default, as SageMaker treats null as absent."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {name: without_nulls(item, members[name]) for name, item in value.items() if item is not None}
    if kind == "list" and isinstance(value, list):
        return [without_nulls(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {key: without_nulls(item, shape.value) for key, item in value.items()}
    return value


def _validate(value: Any, shape: Shape, path: str, errors: list[FieldError], checks: Mapping[str, Check]) -> None:
    if not _has_type(value, shape.type_name):
        errors.append(FieldError(path, value, f"Member must be {_TYPE_NAMES.get(shape.type_name, shape.type_name)}"))
        return
    kind = shape.type_name
    if kind == "structure":
        _validate_structure(value, shape, path, errors, checks)
    elif kind == "list":
        errors.extend(length_errors(value, shape, path))
        for index, item in enumerate(value, start=1):
            item_path = f"{path}.{index}.member"
            if item is None:
                errors.append(FieldError(item_path, None, "Member must not be null"))
            else:
                _validate(item, shape.member, item_path, errors, checks)
    elif kind == "map":
        errors.extend(length_errors(value, shape, path))
        _validate_map(value, shape, path, errors, checks)
    elif shape.name in checks:
        errors.extend(checks[shape.name](value, shape, path))
    else:
        errors.extend(constraint_errors(value, shape, path))


def _validate_structure(value: dict, shape: Shape, path: str, errors: list[FieldError], checks: Mapping[str, Check]) -> None:
    required = set(shape.required_members)
    for name, member in shape.members.items():
        member_value = value.get(name)
        if member_value is None:
            if name in required:
                errors.append(FieldError(member_path(path, name), None, "Member must not be null"))
            continue
        _validate(member_value, member, member_path(path, name), errors, checks)
    known = list(shape.members)
    for name in value:
        if name not in shape.members:
            rule = f"Member must be one of the known members of {shape.name}: [{', '.join(known)}]"
            errors.append(FieldError(member_path(path, str(name)), value[name], rule))


def _validate_map(value: dict, shape: Shape, path: str, errors: list[FieldError], checks: Mapping[str, Check]) -> None:
    """Map entries are reported at the map's path with only the offending entries shown, in the
    form SageMaker uses (`Map keys must satisfy constraint: [...]`)."""
    for key, item in value.items():
        entry = _JavaMap({key: item})
        key_rules = _scalar_rules(key, shape.key, checks)
        if key_rules:
            errors.append(FieldError(path, entry, f"Map keys must satisfy constraint: [{', '.join(key_rules)}]"))
        if item is None:
            errors.append(FieldError(path, entry, "Map value must satisfy constraint: [Member must not be null]"))
            continue
        value_rules = _scalar_rules(item, shape.value, checks)
        if value_rules:
            errors.append(FieldError(path, entry, f"Map value must satisfy constraint: [{', '.join(value_rules)}]"))


def _scalar_rules(value: Any, shape: Shape, checks: Mapping[str, Check]) -> list[str]:
    if not _has_type(value, shape.type_name):
        return [f"Member must be {_TYPE_NAMES.get(shape.type_name, shape.type_name)}"]
    if shape.type_name in ("structure", "list", "map"):
        nested: list[FieldError] = []
        _validate(value, shape, "", nested, checks)
        return [error.rule for error in nested]
    found = checks[shape.name](value, shape, "") if shape.name in checks else constraint_errors(value, shape, "")
    return [error.rule for error in found]


class _JavaMap(dict):
    """A map shown as the service shows one in messages: `{KEY=value}`."""

    def __str__(self) -> str:
        return "{" + ", ".join(f"{key}={value}" for key, value in self.items()) + "}"

    __repr__ = __str__


def _has_type(value: Any, type_name: str) -> bool:
    if type_name in ("string", "blob"):
        return isinstance(value, str)
    if type_name in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name in ("structure", "map"):
        return isinstance(value, dict)
    if type_name == "list":
        return isinstance(value, list)
    if type_name == "timestamp":
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)
    return True


def unique_tag_key_errors(tags: Any, path: str) -> list[FieldError]:
    """Tag keys must be unique per resource (the model cannot say so); one error per repeated key."""
    if not isinstance(tags, list):
        return []
    seen: set[str] = set()
    errors = []
    for index, tag in enumerate(tags, start=1):
        key = tag.get("Key") if isinstance(tag, dict) else None
        if not isinstance(key, str):
            continue
        if key in seen:
            errors.append(
                FieldError(
                    f"{path}.{index}.member.key",
                    key,
                    "Member must be unique within the tag list",
                    message=f"Tag keys must be unique: key '{key}' at '{path}.{index}.member.key' appears more than once in {path}",
                )
            )
        seen.add(key)
    return errors
