"""The HTTP sink of the prediction log: CloudEvents as KServe's payload logger sends them.

Receivers written for KServe's logger (its `spec.predictor.logger.url`) must work unchanged,
so each payload is one HTTP POST in CloudEvents' binary content mode (the body is the payload,
the attributes are `ce-*` headers), with what KServe's logger sets (its pkg/logger, which sends
through the CloudEvents Go SDK):

- `ce-specversion: 1.0`, and `ce-type` `org.kubeflow.serving.inference.request` or
  `org.kubeflow.serving.inference.response`;
- `ce-id`: the request id, the same on a request's two events so receivers can join them;
- `ce-source`: a URI reference naming who answered; KServe's is the predictor's local URL, ours
  is the version's URL path, `/v2/models/<model>/versions/<version>`;
- `ce-time`: when the request arrived (request events) or was answered (response events);
- the extensions `ce-inferenceservicename` (the model), `ce-namespace` (the ModelDeployment's),
  `ce-component` (`predictor`, as on KServe's predictor) and `ce-endpoint`, which KServe sets
  to `default` or `canary`; a replica does not know which share of the traffic it takes, so it
  names its version, which is what tells a canary apart here;
- `Content-Type`: `application/json` for a JSON body; a body with binary tensor data goes as
  `application/octet-stream` with its `Inference-Header-Content-Length`, so it can be read;
  a call through the V2 gRPC service sends its ModelInferRequest and ModelInferResponse as
  they crossed the wire, serialized protobuf, as `application/x-protobuf`.

As KServe does, a response is sent only when it succeeded (status 200); error answers are not
payloads. KServe's `ce-metadata` (request headers a user chose to copy) has no counterpart.

Delivery is at least once: a record whose request event went through but whose response event
did not is sent again whole, so a receiver may see that request event twice (same `ce-id`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import aiohttp

from rayship.contract import VERSIONS_PATH, model_route
from rayship.spec import LogMode
from rayship_predictors.http import HEADER_LENGTH
from rayship_predictors.prediction_log_records import (
    KINDS_OF_MODE,
    Delivery,
    Kind,
    PredictionRecord,
    rfc3339,
)

EVENT_TYPES: dict[Kind, str] = {
    "request": "org.kubeflow.serving.inference.request",
    "response": "org.kubeflow.serving.inference.response",
}
COMPONENT = "predictor"
PROTOBUF = "application/x-protobuf"
POST_TIMEOUT_SECONDS = 10.0
"""How long connecting, or waiting for an answer, may take before the sink counts as down."""

CONNECTIONS = 8
"""Connections a batch's POSTs share (the events of a batch are sent concurrently)."""

_RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class CloudEvent:
    """One event as it is posted: its headers and its body."""

    headers: dict[str, str]
    body: bytes


class _Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def cloud_events(record: PredictionRecord, mode: LogMode, namespace: str) -> list[CloudEvent]:
    """The events `mode` logs of one record, in the order they happened."""
    events = []
    for kind in KINDS_OF_MODE[mode]:
        if kind == "response" and record.status != 200:
            continue
        body, header_length = record.payload(kind)
        moment = record.timestamp if kind == "request" else record.answered_at
        headers = {
            "ce-specversion": "1.0",
            "ce-id": record.request_id,
            "ce-type": EVENT_TYPES[kind],
            "ce-source": f"{model_route(record.model)}{VERSIONS_PATH}{record.version}",
            "ce-time": rfc3339(moment),
            "ce-inferenceservicename": record.model,
            "ce-namespace": namespace,
            "ce-component": COMPONENT,
            "ce-endpoint": record.version,
        }
        if record.is_protobuf(kind):
            headers["Content-Type"] = PROTOBUF
        elif header_length is None:
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Type"] = "application/octet-stream"
            headers[HEADER_LENGTH] = str(header_length)
        events.append(CloudEvent(headers, body))
    return events


@dataclass(frozen=True)
class CloudEventsSink:
    """Posts each record's events to `url`, the records of a batch concurrently."""

    url: str
    mode: LogMode
    namespace: str
    batch_size: int = 100

    async def send(self, batch: Sequence[PredictionRecord]) -> Delivery:
        """Post every record's events; what could not be posted is to be retried."""
        problems: list[str] = []
        # Per socket step, not in total: a POST waiting for one of the batch's connections is
        # not a sink that is down.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=POST_TIMEOUT_SECONDS, sock_read=POST_TIMEOUT_SECONDS
        )
        # A session per batch: nothing is left open between batches, so a sink that is
        # replaced or stopped needs no closing. Within the batch a few kept-alive connections
        # carry every POST: a connection per event cost more than the event.
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            outcomes = await asyncio.gather(
                *(self._send_record(session, record, problems) for record in batch)
            )
        return Delivery(
            retry=tuple(r for r, o in zip(batch, outcomes, strict=True) if o is _Outcome.RETRY),
            refused=sum(outcome is _Outcome.REFUSED for outcome in outcomes),
            problem=problems[0] if problems else None,
        )

    async def _send_record(
        self, session: aiohttp.ClientSession, record: PredictionRecord, problems: list[str]
    ) -> _Outcome:
        for event in cloud_events(record, self.mode, self.namespace):
            outcome = await self._post(session, event, problems)
            if outcome is not _Outcome.DELIVERED:
                return outcome
        return _Outcome.DELIVERED

    async def _post(
        self, session: aiohttp.ClientSession, event: CloudEvent, problems: list[str]
    ) -> _Outcome:
        """One POST: a 2xx delivers; no answer, a 5xx, 408 or 429 is worth a retry; any other
        status is the receiver refusing the event, which sending again would not change."""
        try:
            async with session.post(self.url, data=event.body, headers=event.headers) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as error:
            problems.append(f"cannot reach {self.url}: {error or type(error).__name__}")
            return _Outcome.RETRY
        if 200 <= status < 300:
            return _Outcome.DELIVERED
        problems.append(f"{self.url} answered {status}")
        if status >= 500 or status in _RETRIED_STATUSES:
            return _Outcome.RETRY
        return _Outcome.REFUSED
