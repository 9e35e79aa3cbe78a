"""ModelDeployment specs generated from the CRD's own schema, judged by the real API server.

Two properties, each over hundreds of specs, so that what the hand-written cases in
test_modeldeployment_crd.py miss is found by search rather than by users:

- a spec the schema allows is accepted, or refused by one of the CRD's CEL rules with a
  message naming the field; an accepted one is parsed by `rayship.manifest.parse` (which every
  operator handler calls on the object first), and a refused one is refused by local
  validation too, so `rayship serve` and the cluster judge one YAML alike;
- a valid spec with one thing broken (a wrong type, a number out of range, an unknown or a
  missing field, a value outside an enum or a pattern) is refused, naming the field's path, or
  accepted only where the API server is documented to drop or keep the change harmlessly.

The strategies are built here from the openAPIV3Schema in crds/modeldeployment.yaml, read at
test time. hypothesis-jsonschema was the first choice, but its object strategy calls a private
Hypothesis API that Hypothesis 6.1xx no longer has (`many.more()`), and a structural schema
uses a dozen keywords only, each of which Kubernetes reads in its own way (patterns in RE2,
integers in int64, `x-kubernetes-preserve-unknown-fields`): `values_of` reads exactly those
and fails on any other, so a keyword added to the CRD cannot be ignored silently.

Every request is a server-side dry run (`dryRun=All`): the API server decodes, prunes,
defaults and validates it completely (the CEL rules included) but stores nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import re2
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from rayship.contract import API_VERSION, CRD_VERSION, GROUP, KIND, PLURAL
from rayship.errors import InvalidSpec
from rayship.manifest import ManifestError, parse, validate

pytestmark = pytest.mark.kube

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "modeldeployment.yaml"

Schema = dict[str, Any]


def root_schema() -> Schema:
    """The openAPIV3Schema, read from the CRD file now (not the packaged copy)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def spec_schema() -> Schema:
    """The openAPIV3Schema of `spec`."""
    return dict(root_schema()["properties"]["spec"])


# --- strategies from the structural schema ---------------------------------------------------

READ = {
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "maxItems",
    "x-kubernetes-preserve-unknown-fields",
}
"""The schema keywords `values_of` turns into constraints on what it draws."""

IGNORED = {
    "description",
    # What the API server fills in for an absent field: a generated spec sets it or leaves it
    # out, and the server's dry-run answer shows the default applied.
    "default",
    # The CEL rules are the API server's to judge; the strategies for the strings that only a
    # rule constrains (URIs, variable names, pip requirements, object names, the region) come
    # from HINTS instead, else nearly every spec would be refused for the same random storageUri.
    "x-kubernetes-validations",
}
"""Keywords that constrain nothing a generated spec must respect."""

INT64 = (-(2**63), 2**63 - 1)
"""Kubernetes keeps a JSON integer as an int64: an unbounded `integer` is drawn within it."""

LIST_CAP = 3
STRING_CAP = 24
"""Longest list and plain string drawn: CEL's cost at the bounds is test_modeldeployment_crd's
test_the_largest_runtime_env_fits_the_cel_budget; here breadth over the fields matters."""

_BUCKET = r"[a-z0-9][a-z0-9.-]{0,12}"
_SEGMENT = r"([A-Za-z0-9_ -]|\.){1,8}"
# Any text after a valid start, sometimes long enough in UTF-8 to pass the 255-byte bound.
_ANY_TAIL = st.one_of(
    st.text(max_size=STRING_CAP),
    st.text(st.characters(min_codepoint=0x800, codec="utf-8"), min_size=60, max_size=100),
)
HINTS: dict[str, st.SearchStrategy[str]] = {
    "spec.model.storageUri": st.one_of(
        st.from_regex(rf"(s3|S3)://{_BUCKET}(/{_SEGMENT}){{0,3}}/?", fullmatch=True),
        st.from_regex(r"file://(localhost)?(/[A-Za-z0-9_. -]{1,8}){1,3}/?", fullmatch=True),
        st.builds("{}{}".format, st.sampled_from(["s3://models/", "file:///srv/"]), _ANY_TAIL),
    ),
    "spec.async.storageUri": st.one_of(
        st.from_regex(rf"s3://{_BUCKET}(/{_SEGMENT}){{0,2}}", fullmatch=True),
        st.from_regex(r"file:///[A-Za-z0-9_.-]{1,12}", fullmatch=True),
        st.builds("{}{}".format, st.sampled_from(["s3://jobs/", "file:///"]), _ANY_TAIL),
    ),
    "spec.runtimeEnv.pip[]": st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}(\[[a-z]{1,5}\])?((==|>=|<|~=)[0-9]{1,2}(\.[0-9]{1,2})?)?",
        fullmatch=True,
    ),
    "spec.runtimeEnv.env[].name": st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    "spec.runtimeEnv.envFrom[].prefix": st.from_regex(
        r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True
    ),
    "spec.runtimeEnv.envFrom[].keys[]": st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True),
    **dict.fromkeys(
        [
            "spec.storage.secretRef.name",
            "spec.auth.secretRef.name",
            "spec.runtimeEnv.envFrom[].secretRef.name",
        ],
        st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]{1,4})?", fullmatch=True),
    ),
    "spec.rayCluster.name": st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
    # Each list's tensor names are unique by a rule: a few names, so that lists repeat one.
    **dict.fromkeys(
        ["spec.model.inputs[].name", "spec.model.outputs[].name"], st.sampled_from(["0", "x"])
    ),
    "spec.storage.region": st.from_regex(r"[a-z]{2}(-[a-z]{4,9}){1,2}-[1-9]", fullmatch=True),
}
"""Plausible values, by schema path (`[]` for a list's items), for strings that only a CEL rule
constrains. They are drawn as often as the schema's plain strings, so both the rules' happy
paths and their refusals are reached, and the operator meets Secrets that could exist."""


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value: what a field with `x-kubernetes-preserve-unknown-fields` may hold."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(*INT64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=STRING_CAP),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=LIST_CAP),
            st.dictionaries(st.text(max_size=8), inner, max_size=LIST_CAP),
        ),
        max_leaves=8,
    )


def _string(schema: Schema) -> st.SearchStrategy[str]:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    pattern = schema.get("pattern")
    if pattern is None:
        return st.text(min_size=low, max_size=max(low, min(high or STRING_CAP, STRING_CAP)))

    def fits(text: str) -> bool:
        # The API server matches patterns with Go's RE2, where `$` is the end of the text;
        # Python's `re` also lets `$` match before a final line break.
        return low <= len(text) <= (high or len(text)) and re2.search(pattern, text) is not None

    return st.from_regex(pattern, fullmatch=True).filter(fits)


def values_of(schema: Schema, path: str = "spec") -> st.SearchStrategy[Any]:
    """Values that `schema` (a node of a structural schema) allows, at `path`."""
    unknown = set(schema) - READ - IGNORED
    if unknown:
        raise NotImplementedError(f"{path}: no strategy reads {sorted(unknown)}")
    plain = _plain_values(schema, path)
    hint = HINTS.get(path)
    return plain if hint is None else st.one_of(plain, hint)


def _plain_values(schema: Schema, path: str) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "object":
        properties: dict[str, Schema] = schema.get("properties", {})
        if not properties and schema.get("x-kubernetes-preserve-unknown-fields"):
            return st.dictionaries(st.text(max_size=8), json_values(), max_size=LIST_CAP)
        required = set(schema.get("required", []))
        fields = {key: values_of(sub, f"{path}.{key}") for key, sub in properties.items()}
        return st.fixed_dictionaries(
            {key: fields[key] for key in sorted(required)},
            optional={key: fields[key] for key in sorted(set(fields) - required)},
        )
    if kind == "array":
        most = min(schema.get("maxItems", LIST_CAP), LIST_CAP)
        return st.lists(values_of(schema["items"], f"{path}[]"), max_size=most)
    if kind == "string":
        return _string(schema)
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind == "integer":
        return st.integers(INT64[0] if low is None else low, INT64[1] if high is None else high)
    if kind == "number":
        return st.one_of(
            st.integers(INT64[0] if low is None else int(low), INT64[1] if high is None else high),
            st.floats(low, high, allow_nan=False, allow_infinity=False),
        ).filter(lambda number: low is None or number >= low)
    raise NotImplementedError(f"{path}: no strategy for type {kind!r}")


def specs() -> st.SearchStrategy[dict[str, Any]]:
    """Whole `spec`s that the CRD's schema allows (its CEL rules may still refuse them)."""
    strategy: st.SearchStrategy[dict[str, Any]] = values_of(spec_schema())
    return strategy


# --- the API server's verdict ----------------------------------------------------------------


def manifest(spec: dict[str, Any], name: str = "fuzz") -> dict[str, Any]:
    """A ModelDeployment with `spec`."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True)
class Verdict:
    """What the API server answered: the object it would store, or its refusal."""

    stored: dict[str, Any] | None
    code: int = 201
    refusal: dict[str, Any] | None = None

    @property
    def message(self) -> str:
        """The refusal's message, as kubectl prints it."""
        return str((self.refusal or {}).get("message", ""))

    @property
    def causes(self) -> list[dict[str, str]]:
        """The refusal's causes, one per field at fault."""
        return list(((self.refusal or {}).get("details") or {}).get("causes") or [])


def judge(
    api: kubernetes.client.CustomObjectsApi,
    namespace: str,
    spec: dict[str, Any],
    *,
    strict: bool = False,
) -> Verdict:
    """Create a ModelDeployment with `spec` as a server-side dry run.

    `strict` refuses unknown fields (`fieldValidation=Strict`, what `kubectl apply` sends by
    default); without it the API server drops them with a warning, as any other client sees."""
    extra = {"field_validation": "Strict"} if strict else {}
    try:
        stored = api.create_namespaced_custom_object(
            GROUP, CRD_VERSION, namespace, PLURAL, manifest(spec), dry_run="All", **extra
        )
    except ApiException as refused:
        if refused.status not in (400, 422):
            raise
        return Verdict(None, refused.status, json.loads(refused.body))
    return Verdict(dict(stored))


@pytest.fixture(scope="module", autouse=True)
def _cel_compiled() -> None:
    """Local validation before Hypothesis runs: cel-python raises the recursion limit when it
    first compiles a rule, which Hypothesis reports (as an error here) if it happens mid-test."""
    validate(manifest({"model": {"format": "onnx", "storageUri": "s3://m/x"}}))


@pytest.fixture(scope="module")
def custom_objects(kube_client: ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_client)


FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # Shrinking would repeat hundreds of API calls; the failing example is printed as drawn.
    phases=[Phase.explicit, Phase.generate],
    # `namespace` is function-scoped but only names where the dry runs go: nothing is stored,
    # so one namespace serves every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Derandomized: the same examples in CI as here. Each test sets its own max_examples, so that
the file runs in about a minute and a half on two cores (a dry run takes 10-20 ms, local
validation of a whole spec with its CEL rules as long again)."""


# --- property a: schema-valid specs ----------------------------------------------------------

SCHEMA_REFUSALS = {
    "FieldValueTypeInvalid",
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
}
"""Cause reasons of the OpenAPI part of validation. A FieldValueInvalid from the schema (a
pattern, a bound) says `<field> in body should ...`; one from a CEL rule says the rule's message."""

_SPEC_PATH = re.compile(r"spec(?:\.[A-Za-z]+)+")


def unindexed(field: str) -> str:
    """`spec.model.inputs[0].name` -> `spec.model.inputs.name`."""
    return re.sub(r"\[\d+\]", "", field)


def names_the_field(message: str, field: str) -> bool:
    """Whether a rule's message names `field` (list indices aside) or the object holding it,
    or a field inside it: `spec.model.python.predictorClass is required` is about
    spec.model.python, `spec.runtimeEnv.pip items ...` about spec.runtimeEnv.pip[1]."""
    bare = unindexed(field)
    return any(
        bare.startswith(named) or named.startswith(bare)
        for named in _SPEC_PATH.findall(message)
        if named != "spec"
    )


def rule_refusals(verdict: Verdict) -> list[str]:
    """What is wrong with a refusal of a schema-valid spec: empty when each cause is a CEL
    rule's, names a field under spec, and that field is in the message users read."""
    problems = []
    if verdict.code != 422 or not verdict.causes:
        problems.append(f"not a field refusal: {verdict.refusal}")
    for cause in verdict.causes:
        field, said = cause.get("field", ""), cause.get("message", "")
        if cause.get("reason") in SCHEMA_REFUSALS or " in body " in said:
            problems.append(f"the schema refused what it allows: {cause}")
        elif not field.startswith("spec.") or f"{field}: " not in verdict.message:
            problems.append(f"no field named: {cause}")
        elif not names_the_field(said, field):
            # Also where the messageExpression yields a line break: the API server then shows
            # the rule's `message` (test_rules_quoting_a_value_have_a_message_to_fall_back_on).
            problems.append(f"the rule's message does not name {field}: {said}")
    return problems


def rules(schema: Schema, path: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    """Every CEL rule under `schema`, with the path of the field it refuses (the one it sits on,
    or its fieldPath from there; `[]` for a list's items)."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield (path + rule.get("fieldPath", "")).removeprefix("."), rule
    for key, sub in schema.get("properties", {}).items():
        yield from rules(sub, f"{path}.{key}")
    if "items" in schema:
        yield from rules(schema["items"], f"{path}[]")


QUOTES_A_VALUE = re.compile(r"""'"\s*\+""")
"""How a messageExpression quotes a value: `"..., got '" + self + "'"`."""


def test_rules_quoting_a_value_have_a_message_to_fall_back_on() -> None:
    """The API server shows a rule's `message` instead of its messageExpression when the
    expression's result has a line break, which any quoted string value may have (a pip
    requirement, a URI; even a value its pattern refuses, since the rules still run): without
    one it shows the bare rule. Found by the fuzzing above, with
    spec.model.storageUri = "s3://models/a\\nb". The message must name the field, as the
    messageExpression does."""
    unnamed = [
        f"{field}: {rule['rule']}"
        for field, rule in rules(root_schema())
        if QUOTES_A_VALUE.search(rule.get("messageExpression", ""))
        and not names_the_field(rule.get("message", ""), field.replace("[]", ""))
    ]
    assert unnamed == []


@settings(FUZZ, max_examples=800)
@given(spec=specs())
def test_schema_valid_specs_are_accepted_or_refused_by_a_rule_naming_the_field(
    custom_objects: kubernetes.client.CustomObjectsApi, namespace: str, spec: dict[str, Any]
) -> None:
    """The API server and rayship agree on every spec the schema allows.

    Accepted: the stored object (defaults applied, as the operator's handlers receive it) must
    parse, since any exception in `parse` fails every reconcile of the object; an InvalidSpec
    there is a spec the CRD lets in and rayship then refuses. Refused: a CEL rule's refusal
    that names the field, and local validation (`rayship serve`) refuses the spec too."""
    verdict = judge(custom_objects, namespace, spec)

    if verdict.stored is not None:
        try:
            parse(verdict.stored)
        except InvalidSpec as refused:
            pytest.fail(f"the API server accepts what rayship refuses:\n{refused}")
        return
    assert rule_refusals(verdict) == []
    with pytest.raises(ManifestError):
        validate(manifest(spec))


# --- property b: one thing broken in a valid spec --------------------------------------------

FULL: dict[str, Any] = {
    "model": {
        "name": "iris-net",
        # onnx: the CEL rules then require no more fields, so only the schema's `required`
        # decides whether a null (an absent field) is harmless.
        "format": "onnx",
        "storageUri": "s3://models/iris",
        "version": "3",
        "pollIntervalSeconds": 30,
        "onnx": {"file": "model.onnx", "intraOpThreads": 2},
        "pytorch": {"file": "model.pt", "modelClass": "net:Iris", "initArgs": {"hidden": 8}},
        "python": {"predictorClass": "pre.post:Predictor"},
        "kserve": {"modelClass": "custom:Model"},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    },
    "storage": {
        "endpointUrl": "http://minio:9000",
        "region": "eu-west-1",
        "secretRef": {"name": "s3"},
    },
    "resources": {"cpu": 0.5, "memory": "512Mi", "gpu": 0},
    "replicas": 2,
    "maxOngoingRequests": 16,
    "autoscaling": {
        "minReplicas": 1,
        "maxReplicas": 4,
        "targetOngoingRequests": 2.5,
        "upscaleDelaySeconds": 10,
        "downscaleDelaySeconds": 60.5,
    },
    "batching": {"maxBatchSize": 8, "batchWaitTimeoutMs": 2.5},
    "runtimeEnv": {
        "pip": ["pyjokes==0.8.3"],
        "env": [{"name": "MODE", "value": "fast"}],
        "envFrom": [{"secretRef": {"name": "api"}, "prefix": "API_", "keys": ["TOKEN"]}],
    },
    "rollout": {
        "canary": {"version": "4", "percent": 10},
        "readinessDeadlineSeconds": 120,
        "keepPreviousSeconds": 60,
    },
    "rayCluster": {"name": "gpu-pool"},
    "auth": {"secretRef": {"name": "tokens"}, "key": "tokens"},
    "async": {
        "storageUri": "s3://jobs/iris",
        "resultTtlSeconds": 600,
        "timeoutSeconds": 60,
        "maxQueued": 8,
    },
    "logging": {"mode": "request", "sampleRate": 0.5, "url": "https://logs.example/events"},
}
"""A valid spec that sets every field of the schema but one, so that a mutation can reach
each: spec.logging takes exactly one sink, so `storageUri` is set in FULL_S3_LOGGING."""

FULL_S3_LOGGING: dict[str, Any] = {
    **FULL,
    "logging": {"mode": "all", "sampleRate": 1.0, "storageUri": "s3://logs/iris/"},
}
"""FULL with the other prediction log sink."""

FULLS = (FULL, FULL_S3_LOGGING)

ONE_OF_SINKS = frozenset({("logging", "url"), ("logging", "storageUri")})
"""Keys of which a spec holds exactly one: without it, the holder's rule refuses the spec,
naming the holder."""


@dataclass(frozen=True)
class Site:
    """A place in FULL: the path users read (`spec.model.inputs[0].name`), the keys and indices
    that reach it, and its schema."""

    path: str
    keys: tuple[str | int, ...]
    schema: Schema


def sites(
    schema: Schema, value: Any, path: str = "spec", keys: tuple[str | int, ...] = ()
) -> Iterator[Site]:
    """Every value in `value` with its schema, depth first."""
    yield Site(path, keys, schema)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from sites(sub, value[key], f"{path}.{key}", (*keys, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from sites(schema["items"], item, f"{path}[{index}]", (*keys, index))


def fields_of(schema: Schema, path: str = "spec") -> Iterator[str]:
    """The path of every field the schema declares (`[0]` for a list's item)."""
    yield path
    for key, sub in schema.get("properties", {}).items():
        yield from fields_of(sub, f"{path}.{key}")
    if "items" in schema:
        yield from fields_of(schema["items"], f"{path}[0]")


def placed(spec: dict[str, Any], keys: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A copy of `spec` with the value at `keys` replaced by `value` (`DELETE` removes it)."""
    copied: dict[str, Any] = json.loads(json.dumps(spec))
    parent: Any = copied
    for key in keys[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    return copied


DELETE = object()
"""`placed`'s marker for removing a field."""


@dataclass(frozen=True)
class Mutation:
    """One thing broken in FULL, and what the API server must answer."""

    kind: str
    spec: dict[str, Any]
    field: str  # the path the refusal must name
    keys: tuple[str | int, ...]  # the keys and indices that reach the field in `spec`
    refused: bool = True  # False: the documented harmless kinds, accepted


WRONG_TYPES: dict[str, list[Any]] = {
    "string": [7, 2.5, True, [], {}],
    "integer": ["7", 2.5, True, [], {}],
    "number": ["7", True, [], {}],  # an integer is a number
    "object": ["x", 7, [], True],
    "array": ["x", 7, {}, True],
}


def _out_of_range(schema: Schema) -> list[Any]:
    """Values just past the schema's bounds, for numbers, strings and lists."""
    low, high = schema.get("minimum"), schema.get("maximum")
    bad: list[Any] = []
    if low is not None:
        bad += [low - 1] if isinstance(low, int) else [low / 2 - 1e-9, -low]
    if high is not None:
        bad += [high + 1, high + 0.5]
    if "maxLength" in schema:
        bad.append("a" * (schema["maxLength"] + 1))
    if schema.get("minLength", 0) > 0:
        bad.append("a" * (schema["minLength"] - 1))
    return bad


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """FULL (or FULL_S3_LOGGING) with one field broken, in one of the ways a person or a tool
    gets a spec wrong."""
    base = draw(st.sampled_from(FULLS))
    site = draw(st.sampled_from(list(sites(spec_schema(), base))[1:]))
    schema, keys, path = site.schema, site.keys, site.path
    current = _value_at(base, keys)
    kinds = ["wrong type", "null"]
    if schema["type"] == "object":
        kinds += ["unknown field"] + (["missing required field"] if "required" in schema else [])
    if _out_of_range(schema) or ("maxItems" in schema and current):
        kinds.append("out of range")
    kinds += [
        kind for key, kind in (("enum", "bad enum"), ("pattern", "bad pattern")) if key in schema
    ]
    kind = draw(st.sampled_from(kinds))
    wrong: Any
    if kind == "wrong type":
        wrong = draw(st.sampled_from(WRONG_TYPES[schema["type"]]))
    elif kind == "null":
        # The API server drops a null it cannot store (no field here is nullable), leaving the
        # field absent: harmless unless it is required. A list's item cannot be absent.
        holder = _schema_at(keys[:-1])
        if tuple(keys) in ONE_OF_SINKS:  # the last sink gone: the holder's rule refuses
            holder_path = path.rpartition(".")[0]
            return Mutation(kind, placed(base, keys, None), holder_path, keys, refused=True)
        needed = isinstance(keys[-1], int) or keys[-1] in holder.get("required", [])
        return Mutation(kind, placed(base, keys, None), path, keys, refused=needed)
    elif kind == "unknown field":
        name = draw(st.sampled_from(["unexpected", "Replicas", "storage_uri", "x-extra"]))
        # Under x-kubernetes-preserve-unknown-fields (pytorch.initArgs) every key is the user's.
        kept = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        added = (*keys, name)
        return Mutation(kind, placed(base, added, "?"), f"{path}.{name}", added, refused=not kept)
    elif kind == "missing required field":
        required = draw(st.sampled_from(schema["required"]))
        gone = (*keys, required)
        return Mutation(kind, placed(base, gone, DELETE), f"{path}.{required}", gone)
    elif kind == "out of range":
        too_many = [current * (schema["maxItems"] + 1)] if "maxItems" in schema else []
        wrong = draw(st.sampled_from(_out_of_range(schema) + too_many))
    elif kind == "bad enum":
        wrong = draw(st.sampled_from(["tensorflow", "ONNX", "fp32", "", "true"]))
    else:
        pattern = schema["pattern"]
        near = [f"{current}\n", f" {current}", f"{current} ", f"-{current}", f"{current}/x"]
        wrong = draw(
            st.one_of(st.sampled_from(near), st.text(max_size=STRING_CAP)).filter(
                lambda text: re2.search(pattern, text) is None
            )
        )
    return Mutation(kind, placed(base, keys, wrong), path, keys)


def _value_at(spec: dict[str, Any], keys: tuple[str | int, ...]) -> Any:
    value: Any = spec
    for key in keys:
        value = value[key]
    return value


def _schema_at(keys: tuple[str | int, ...]) -> Schema:
    schema = spec_schema()
    for key in keys:
        schema = schema["items"] if isinstance(key, int) else schema["properties"][key]
    return schema


def test_full_reaches_every_field_and_is_accepted(
    custom_objects: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    """The mutations start from FULL or FULL_S3_LOGGING: a field both lack would never be
    broken."""
    reached = {unindexed(site.path) for full in FULLS for site in sites(spec_schema(), full)}
    assert {unindexed(field) for field in fields_of(spec_schema())} - reached == set()
    for full in FULLS:
        verdict = judge(custom_objects, namespace, full, strict=True)
        assert verdict.stored is not None, verdict.message
        parse(verdict.stored)


@settings(FUZZ, max_examples=300)
@given(mutation=mutations())
def test_one_broken_field_is_refused_naming_its_path(
    custom_objects: kubernetes.client.CustomObjectsApi, namespace: str, mutation: Mutation
) -> None:
    """Each mutation is refused naming the field's path, by the API server and by local
    validation alike, except where the API server is documented to drop the change: a null
    where a field may be absent, an unknown field when the client does not ask for strict
    field validation (kubectl apply does: then it is refused by name)."""
    strict = judge(custom_objects, namespace, mutation.spec, strict=True)
    if mutation.kind == "unknown field":
        lenient = judge(custom_objects, namespace, mutation.spec)
        assert lenient.stored is not None, lenient.message
        *keys, name = mutation.keys
        holder: Any = lenient.stored["spec"]
        for key in keys:
            holder = holder[key]
        assert (name in holder) == (not mutation.refused)
        # Local validation drops it too, as the API server does for any client but kubectl.
        parse(manifest(mutation.spec))
    if not mutation.refused:
        assert strict.stored is not None, strict.message
        parse(manifest(mutation.spec))
        return
    assert strict.stored is None, f"accepted: {mutation}"
    assert mutation.field in strict.message
    if mutation.kind != "unknown field":
        with pytest.raises(ManifestError) as refused:
            parse(manifest(mutation.spec))
        assert local_names(str(refused.value), mutation.field)


def local_names(message: str, field: str) -> bool:
    """Whether local validation's `message` names `field`, in its own form: list indices as
    segments (`spec.model.inputs.0.name`), and a missing field as its holder's
    `'name' is a required property`."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", field)
    holder, _, name = dotted.rpartition(".")
    return f"{dotted}: " in message or f"{holder}: '{name}' is a required property" in message
