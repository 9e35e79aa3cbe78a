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

Events go pipelined (`rayship_predictors.pipelined_http`), a record's request event just before
its response event on the same connection. Delivery is at least once: a record one of whose
events did not go through is sent again whole, so a receiver may see an event twice (same
`ce-id` and `ce-type`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from rayship.contract import VERSIONS_PATH, model_route
from rayship.spec import LogMode
from rayship_predictors.http import HEADER_LENGTH
from rayship_predictors.pipelined_http import Answer, Post, post_all
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
"""How long connecting, or waiting for the next answer, may take before the sink counts as
down."""

CONNECTIONS = 4
"""Connections a batch's POSTs are pipelined over, each carrying a contiguous share of it."""

_RETRIED_STATUSES = frozenset({408, 429})


class _Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def cloud_events(record: PredictionRecord, mode: LogMode, namespace: str) -> list[Post]:
    """The events `mode` logs of one record, in the order they happened, as POSTs."""
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
        events.append(Post(headers, body))
    return events


@dataclass(frozen=True)
class CloudEventsSink:
    """Posts each record's events to `url`, pipelined over a few connections per batch."""

    url: str
    mode: LogMode
    namespace: str
    batch_size: int = 100

    async def send(self, batch: Sequence[PredictionRecord]) -> Delivery:
        """Post every record's events; what could not be posted is to be retried."""
        events = [cloud_events(record, self.mode, self.namespace) for record in batch]
        posts = [post for record_events in events for post in record_events]
        answers = iter(
            await post_all(self.url, posts, connections=CONNECTIONS, timeout_s=POST_TIMEOUT_SECONDS)
        )
        problems: list[str] = []
        outcomes = [
            _record_outcome([next(answers) for _ in record_events], self.url, problems)
            for record_events in events
        ]
        return Delivery(
            retry=tuple(r for r, o in zip(batch, outcomes, strict=True) if o is _Outcome.RETRY),
            refused=sum(outcome is _Outcome.REFUSED for outcome in outcomes),
            problem=problems[0] if problems else None,
        )


def _record_outcome(answers: Sequence[Answer], url: str, problems: list[str]) -> _Outcome:
    """A record is delivered when each of its events got a 2xx; it is sent again (whole) when
    one got no answer, a 5xx, 408 or 429; any other status is the receiver refusing it, which
    sending again would not change."""
    for answer in answers:
        if isinstance(answer, str):
            problems.append(answer)
            return _Outcome.RETRY
        if 200 <= answer < 300:
            continue
        problems.append(f"{url} answered {answer}")
        if answer >= 500 or answer in _RETRIED_STATUSES:
            return _Outcome.RETRY
        return _Outcome.REFUSED
    return _Outcome.DELIVERED
