"""Validate ModelDeployment documents against the CRD itself, the way the API server would.

Local mode has no API server, yet the same YAML must be refused for the same reasons and with
the same field names. So this module reads the CRD shipped in `crds/` (linked into the
package), applies its structural defaults, checks the OpenAPI schema with jsonschema and
evaluates the CEL `x-kubernetes-validations` rules with cel-python, each rule's
`messageExpression` included, so a refusal quotes the offending value as kubectl's does.
Transition rules (those that mention `oldSelf`, such as the root rule that keeps the model name)
only apply to updates, and a file is always a create: they are skipped here.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError, CELFunction, function_matches

from rayship.contract import API_VERSION, KIND
from rayship.errors import InvalidSpec
from rayship.spec import ModelDeploymentSpec, spec_from_dict

Schema = dict[str, Any]


class ManifestError(InvalidSpec):
    """A document is not a valid ModelDeployment; the message names every offending field."""


@dataclass(frozen=True)
class ModelDeployment:
    """A validated ModelDeployment: identity plus typed spec."""

    name: str
    namespace: str
    spec: ModelDeploymentSpec

    @property
    def model_name(self) -> str:
        """The V2 model name: spec.model.name, or metadata.name when unset."""
        return self.spec.model.name or self.name


@functools.cache
def crd() -> dict[str, Any]:
    """The ModelDeployment CRD document, read once from the package."""
    text = resources.files("rayship").joinpath("crd/modeldeployment.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def crd_schema() -> Schema:
    """The openAPIV3Schema of the served version."""
    version = crd()["spec"]["versions"][0]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def drop_nulls(schema: Schema, value: Any) -> Any:
    """Return `value` without the nulls the API server drops before defaulting.

    A null where the schema does not say `nullable: true` is removed from its object, as if the
    field were absent (so a default applies, and a required field is reported missing); under
    `x-kubernetes-preserve-unknown-fields` values are the user's and kept. A null list item is
    kept, and refused by the schema as the API server refuses it.
    """
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        return {
            key: drop_nulls(properties[key], item) if key in properties else item
            for key, item in value.items()
            if item is not None or key not in properties or properties[key].get("nullable")
        }
    if isinstance(value, list) and "items" in schema:
        return [drop_nulls(schema["items"], item) for item in value]
    return value


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Return `value` with the schema's `default`s filled in, as the API server does.

    Defaults apply to absent properties of objects that are present (or defaulted themselves),
    recursively, and to array items.
    """
    if isinstance(value, dict) and schema.get("type") == "object":
        result = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = apply_defaults(sub, result[key])
        return result
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _re2_pattern(
    validator: jsonschema.protocols.Validator, pattern: str, instance: Any, _: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """The `pattern` keyword as the API server reads it: with RE2 (the engine cel-python's
    matches() uses), where `$` ends the text; Python's `re` also lets it match before a final
    line break, so `abc\\n` would pass `^[a-z]+$` here and be refused by the cluster."""
    if not validator.is_type(instance, "string"):
        return
    matched = function_matches(instance, pattern)
    if not (isinstance(matched, celtypes.BoolType) and matched):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Draft7 = jsonschema.Draft7Validator
_Validator = jsonschema.validators.create(
    meta_schema=_Draft7.META_SCHEMA,
    validators={**_Draft7.VALIDATORS, "pattern": _re2_pattern},
    type_checker=_Draft7.TYPE_CHECKER,
    format_checker=_Draft7.FORMAT_CHECKER,
)
"""Draft 7 validation, but for `pattern`."""


def _unencodable(value: Any, path: str) -> list[str]:
    """Strings that are not Unicode text (a lone surrogate, which a YAML escape such as
    "\\udc3d" makes): JSON cannot carry them to an API server, nor RE2 match them."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as error:
            return [f"{path}: {value!r} is not valid Unicode text ({error.reason})"]
        return []
    if isinstance(value, dict):
        return [m for key, item in value.items() for m in _unencodable(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [
            m for index, item in enumerate(value) for m in _unencodable(item, f"{path}.{index}")
        ]
    return []


def _schema_errors(schema: Schema, document: dict[str, Any]) -> list[str]:
    """Structural schema violations, each prefixed with its dotted field path."""
    validator = _Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        messages.append(f"{path}: {error.message}")
    return messages


def _cel_errors(schema: Schema, value: Any, path: str) -> list[str]:
    """Messages of the CEL rules that `value` breaks, walking the schema like the API server."""
    messages: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        activation = {"self": json_to_cel(value)}
        if not _cel_rule(rule["rule"]).evaluate(activation):
            messages.append(f"{path}: {_rule_message(rule, activation)}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                messages += _cel_errors(sub, value[key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            messages += _cel_errors(schema["items"], item, f"{path}[{index}]")
    return messages


def _rule_message(rule: dict[str, Any], activation: dict[str, Any]) -> str:
    """What the API server says for a broken rule: its `messageExpression` when that yields a
    one-line string, else `message`, else the rule itself."""
    expression = rule.get("messageExpression")
    if expression is not None:
        try:
            message = _cel_rule(expression).evaluate(activation)
        except CELEvalError:
            message = None
        if isinstance(message, str) and message.strip() and "\n" not in message:
            return str(message)
    return str(rule.get("message") or f"failed rule: {rule['rule']}")


def _split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    """`text.split(separator)` of Kubernetes' CEL string library, which cel-python lacks."""
    return celtypes.ListType(celtypes.StringType(part) for part in text.split(separator))


_FORMAT_VERB = re.compile(r"%(.)")


def _format(template: celtypes.StringType, values: celtypes.ListType) -> celtypes.StringType:
    """`template.format(values)` of Kubernetes' CEL string library, for the verbs the CRD uses:
    `%s`, `%d` and `%%`. The CRD's messages need it: the API server refuses a messageExpression
    that concatenates `string(int)`, whose length it cannot bound. Any other verb, or too few
    values, is an evaluation error, so the rule's static message is shown instead."""
    remaining = list(values)

    def substitute(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        if verb not in ("s", "d") or not remaining:
            raise ValueError(f"cannot format %{verb} with {list(values)!r}")
        return str(remaining.pop(0))

    return celtypes.StringType(_FORMAT_VERB.sub(substitute, template))


_KUBERNETES_FUNCTIONS: dict[str, CELFunction] = {"split": _split, "format": _format}
"""The functions of Kubernetes' CEL libraries that the CRD's rules and messages call."""


@functools.cache
def _cel_rule(expression: str) -> Any:
    """A compiled CEL program, cached because the same rules run for every document."""
    environment = celpy.Environment()
    return environment.program(environment.compile(expression), functions=_KUBERNETES_FUNCTIONS)


def validate(document: dict[str, Any]) -> dict[str, Any]:
    """The document with defaults applied, or ManifestError listing every violation."""
    if not isinstance(document, dict):
        raise ManifestError("a ModelDeployment must be a YAML mapping")
    name = (document.get("metadata") or {}).get("name", "<unnamed>")
    where = f"ModelDeployment {name!r}"
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise ManifestError(
            f"{where}: apiVersion/kind must be {API_VERSION}/{KIND}, "
            f"got {document.get('apiVersion')}/{document.get('kind')}"
        )
    if not isinstance(document.get("metadata"), dict) or "name" not in document["metadata"]:
        raise ManifestError(f"{where}: metadata.name is required")
    schema = crd_schema()
    defaulted: dict[str, Any] = apply_defaults(schema, drop_nulls(schema, document))
    messages = [m.removeprefix(".") for m in _unencodable(defaulted.get("spec"), ".spec")]
    messages = messages or _schema_errors(schema, defaulted)
    if not messages:
        messages = [message.removeprefix(".") for message in _cel_errors(schema, defaulted, "")]
    if messages:
        raise ManifestError(f"{where} is invalid:\n  " + "\n  ".join(messages))
    return defaulted


def parse(document: dict[str, Any]) -> ModelDeployment:
    """Validate a ModelDeployment document and return its typed form."""
    valid = validate(document)
    metadata = valid["metadata"]
    return ModelDeployment(
        name=metadata["name"],
        namespace=metadata.get("namespace", "default"),
        spec=spec_from_dict(valid["spec"]),
    )


RELATIVE_URI_FIELDS = (("model", "storageUri"), ("async", "storageUri"))
"""The spec fields whose `file:` URIs local mode takes relative to the YAML file."""


def _with_absolute_storage_uris(document: Any, folder: Path) -> Any:
    """The document with relative `file:` URIs (`RELATIVE_URI_FIELDS`) made absolute.

    Local mode lets a YAML file name its models relative to itself (`file:models/iris`), so the
    examples run from any working directory. The CRD, which a cluster enforces, only knows
    absolute URIs; resolving before validation lets one schema judge both. Any other value
    (another URI, or a document too malformed to have the field) is left unchanged.
    """
    resolved = copy.deepcopy(document)
    for section, name in RELATIVE_URI_FIELDS:
        try:
            parent = resolved["spec"][section]
            uri = parent[name]
        except (KeyError, TypeError):
            continue
        if isinstance(uri, str) and uri.startswith("file:") and not uri.startswith("file://"):
            parent[name] = (folder / uri.removeprefix("file:")).resolve().as_uri()
    return resolved


def load_file(path: Path) -> list[ModelDeployment]:
    """Every ModelDeployment in a (multi-document) YAML file; relative `file:` URIs are taken
    relative to the file's folder."""
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    if not documents:
        raise ManifestError(f"{path}: no ModelDeployment in the file")
    folder = path.resolve().parent
    return [parse(_with_absolute_storage_uris(document, folder)) for document in documents]
