"""The S3 sink of the prediction log: one JSON Lines object per batch, one line per prediction.

Objects are named `<prefix><model>/<version>/<YYYY>/<MM>/<DD>/<HHMMSS>-<uuid>.jsonl` after the
arrival (UTC) of the batch's first request, so a day's logs of a version are one listing and
the names sort by time. Each line is one JSON object:

    {"model": "iris", "version": "3", "id": "<request id>",
     "timestamp": "2025-01-31T12:00:00.000000Z", "latency_ms": 1.25, "status": 200,
     "request": {...V2 request...}, "response": {...V2 response...}}

`timestamp` is when the request arrived (RFC 3339, UTC), `latency_ms` how long it took to
answer, in milliseconds. `request` and `response` are V2 JSON documents, null when
`spec.logging.mode` leaves them out; an error answer's response is its `{"error": ...}` body.
Binary tensor data is written as the V2 JSON form: each tensor's `data` list (BYTES elements
as text, invalid UTF-8 escaped with backslashes), its `binary_data_size` parameter gone. Lines
are strict JSON: a non-finite float is written as null. A body that is not V2 (a malformed
request the replica refused with 400) is kept as `request_base64` or `response_base64`
instead, with the document null. A call through the V2 gRPC service is written in the same
JSON form: its ModelInferRequest as a V2 request (`id`, `parameters`, `inputs` with `data`,
`outputs` naming those it asked for), its ModelInferResponse as a V2 response.

The conversion and the upload both run in a thread: boto3 blocks, and turning large tensors
into JSON takes time that must not be the event loop's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf.message import DecodeError

from rayship.errors import InvalidSpec
from rayship.spec import LogMode, StorageSpec
from rayship.storage import StorageError, StorageUnavailable
from rayship.storage.s3 import client_for, errors_naming
from rayship.storage.uris import S3Location, parse_model_uri
from rayship_predictors.errors import InferenceError
from rayship_predictors.prediction_log_records import (
    DELIVERED,
    KINDS_OF_MODE,
    Delivery,
    Kind,
    PredictionRecord,
    rfc3339,
)
from rayship_predictors.v2.codec import decode_request, encode_json
from rayship_predictors.v2.grpc_codec import decode_infer_request, decode_infer_response

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TENSORS: dict[Kind, str] = {"request": "inputs", "response": "outputs"}
"""Where each kind of V2 document lists its tensors."""

_BINARY_SIZE = "binary_data_size"


def v2_document(body: bytes, header_length: int | None, tensors: str) -> dict[str, Any]:
    """A V2 request or response body as its JSON form, with `data` lists for binary tensors.

    `tensors` is the key that lists them (`inputs` or `outputs`). The codec reads the binary
    part: a response's `outputs` are described exactly as a request's `inputs` are, so they
    are handed to `decode_request` as inputs. Raises `ValueError` (JSON, or nested too deep:
    `RecursionError`) or `InferenceError` (V2) for a body that is not V2.
    """
    if header_length is None:
        document: dict[str, Any] = json.loads(body)  # the codec writes NaN tokens: json reads them
        return document
    header = json.loads(body[:header_length])
    if not isinstance(header, dict):
        raise ValueError("the JSON header is not an object")
    descriptors = header.get(tensors) or []
    framing = encode_json({"inputs": descriptors})
    arrays = decode_request(framing + body[header_length:], len(framing)).inputs
    header[tensors] = [_with_data(tensor, arrays[tensor["name"]]) for tensor in descriptors]
    return header


def _with_data(descriptor: dict[str, Any], array: np.ndarray) -> dict[str, Any]:
    """A tensor's descriptor with its data as a flat list instead of a binary part's size."""
    tensor = {key: value for key, value in descriptor.items() if key not in ("parameters", "data")}
    parameters = {
        key: value for key, value in (descriptor.get("parameters") or {}).items()
        if key != _BINARY_SIZE
    }  # fmt: skip
    if parameters:
        tensor["parameters"] = parameters
    items = array.ravel().tolist()
    tensor["data"] = [_text(item) for item in items] if descriptor["datatype"] == "BYTES" else items
    return tensor


def _text(item: object) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="backslashreplace")
    return str(item)


_NOT_V2 = (ValueError, RecursionError, InferenceError, DecodeError)


def json_line(record: PredictionRecord, mode: LogMode) -> bytes:
    """One record as a line of JSON, newline included."""
    line = _line(record, mode, as_v2=True)
    try:
        return encode_json(line) + b"\n"
    except TypeError:  # JSON numbers orjson cannot write (beyond 64 bits): a request not V2
        return encode_json(_line(record, mode, as_v2=False)) + b"\n"


def _line(record: PredictionRecord, mode: LogMode, *, as_v2: bool) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": record.model,
        "version": record.version,
        "id": record.request_id,
        "timestamp": rfc3339(record.timestamp),
        "latency_ms": record.latency_seconds * 1000,
        "status": record.status,
        "request": None,
        "response": None,
    }
    for kind in KINDS_OF_MODE[mode]:
        body, _ = record.payload(kind)
        document = _readable(record, kind) if as_v2 else None
        if document is None:
            line[f"{kind}_base64"] = base64.b64encode(body).decode()
        else:
            line[kind] = document
    return line


def _readable(record: PredictionRecord, kind: Kind) -> dict[str, Any] | None:
    """The V2 JSON form of a record's body, or None for a body that is not V2."""
    body, header_length = record.payload(kind)
    try:
        if record.is_protobuf(kind):
            return grpc_document(body, kind)
        return v2_document(body, header_length, TENSORS[kind])
    except _NOT_V2:
        return None


def grpc_document(body: bytes, kind: Kind) -> dict[str, Any]:
    """A serialized ModelInferRequest or ModelInferResponse as the V2 JSON document a REST
    body of the same call is written as."""
    if kind == "response":
        response, arrays = decode_infer_response(body)
        head = {"model_name": response.model_name, "model_version": response.model_version}
        datatypes = {tensor.name: tensor.datatype for tensor in response.outputs}
        return {
            **head,
            **({"id": response.id} if response.id else {}),
            "outputs": [_grpc_tensor(name, datatypes[name], {}, a) for name, a in arrays.items()],
        }
    request = decode_infer_request(body)
    document: dict[str, Any] = {"id": request.id} if request.id else {}
    if request.parameters:
        document["parameters"] = request.parameters
    document["inputs"] = [
        _grpc_tensor(
            name, request.input_datatypes[name], request.input_parameters.get(name, {}), array
        )
        for name, array in request.inputs.items()
    ]
    if request.outputs:
        document["outputs"] = [{"name": output.name} for output in request.outputs]
    return document


def _grpc_tensor(
    name: str, datatype: str, parameters: dict[str, Any], array: np.ndarray
) -> dict[str, Any]:
    descriptor = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    return _with_data({**descriptor, "parameters": parameters}, array)


def object_key(prefix: str, first: PredictionRecord) -> str:
    """Where a batch starting with `first` is written, below the key prefix `prefix`."""
    moment = first.timestamp
    day = f"{moment:%Y/%m/%d}"
    return f"{prefix}{first.model}/{first.version}/{day}/{moment:%H%M%S}-{uuid.uuid4().hex}.jsonl"


@dataclass(frozen=True)
class JsonLinesSink:
    """Writes each batch as one object below an S3 prefix."""

    client: S3Client
    location: S3Location
    mode: LogMode
    batch_size: int = 500

    async def send(self, batch: Sequence[PredictionRecord]) -> Delivery:
        """Write the batch; an unreachable S3 (or its 5xx) is worth a retry, any other refusal
        (access denied, no such bucket) is not."""
        try:
            await asyncio.to_thread(self._write, batch)
        except StorageUnavailable as error:
            return Delivery(retry=tuple(batch), problem=str(error))
        except StorageError as error:
            return Delivery(refused=len(batch), problem=str(error))
        return DELIVERED

    def _write(self, batch: Sequence[PredictionRecord]) -> None:
        key = object_key(self.location.prefix, batch[0])
        body = b"".join(json_line(record, self.mode) for record in batch)
        with errors_naming(f"s3://{self.location.bucket}/{key}"):
            self.client.put_object(Bucket=self.location.bucket, Key=key, Body=body)


def open_json_lines_sink(
    storage_uri: str, mode: LogMode, storage: StorageSpec, batch_size: int = 500
) -> JsonLinesSink:
    """The sink for `s3://bucket/prefix`, reached as the model's storage is: `storage`'s
    endpoint and region, boto3's credentials chain (the replica's AWS_* variables); up to
    `batch_size` records an object."""
    location = parse_model_uri(storage_uri)
    if not isinstance(location, S3Location):
        raise InvalidSpec(
            f"spec.logging.storageUri must be s3://bucket/prefix, got {storage_uri!r}"
        )
    return JsonLinesSink(client_for(storage_uri, storage), location, mode, batch_size)
