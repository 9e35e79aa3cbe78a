"""Prediction logging (`spec.logging`): sampled request and response payloads, sent to a sink
in the background so that logging never slows or fails inference.

The request path calls two methods of a replica's `PredictionLogger`, neither of which blocks,
raises or does I/O: `sampled()` draws whether this request is logged, and `offer(record)` puts
the record in a bounded queue (full: the record is dropped and counted). A task on the
replica's event loop, started with the first record, takes records from the queue in batches
(up to the sink's `batch_size`, or what came within `batch_wait_seconds`) and hands each batch
to the sink: CloudEvents over HTTP (`prediction_log_events`) or JSON Lines objects in S3
(`prediction_log_s3`). While the sink cannot be reached, the task retries the batch with
doubling delays (`Backoff`) and records keep queueing, then dropping once the queue is full.

Every record that is not delivered is reported to the `on_drop(reason, count)` callback the
replica gives (its metric), with a reason:

- `queue_full`: offered while the queue was full (the sink is slow or down);
- `sink_failed`: refused for good by the sink (a 4xx answer, S3 access denied), or lost to an
  unexpected error while sending;
- `disabled`: queued when `spec.logging` was removed;
- `stopped`: still queued or unsent when `drain` gave up.

Changing the sink (a new URL or prefix) loses nothing: queued records, and a batch being
retried, go to the new sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rayship.contract import PredictionLogging
from rayship.errors import InvalidSpec
from rayship.spec import StorageSpec
from rayship.storage import StorageError
from rayship_predictors.prediction_log_events import CloudEventsSink
from rayship_predictors.prediction_log_records import PredictionRecord, Sink
from rayship_predictors.prediction_log_s3 import open_json_lines_sink
from rayship_predictors.settings import PredictorSettings

__all__ = [
    "Backoff",
    "BatchSizes",
    "DropCallback",
    "PredictionLogger",
    "PredictionRecord",
    "open_sink",
]

logger = logging.getLogger(__name__)

DropCallback = Callable[[str, int], None]
"""`on_drop(reason, count)`: records that will never be delivered, and why."""

BATCH_WAIT_SECONDS = 1.0
"""How long a batch waits to fill once its first record is in: long enough that a busy replica
sends full batches (one S3 object, not one per request), short enough that logs lag little."""


FILL_POLL_SECONDS = 0.05
"""How often a filling batch looks whether it can be completed: a poll, not a wait per record,
so a busy queue costs the event loop twenty checks a second."""


@dataclass(frozen=True)
class Backoff:
    """Delays between tries of a sink that is down: doubling from `first_seconds`, capped at
    `max_seconds`, so a sink that comes back is used again within `max_seconds`."""

    first_seconds: float = 0.5
    max_seconds: float = 30.0

    def delays(self) -> Iterator[float]:
        """The delay before each next try."""
        delay = self.first_seconds
        while True:
            yield delay
            delay = min(delay * 2, self.max_seconds)


@dataclass(frozen=True)
class BatchSizes:
    """The most records each kind of sink takes at once: concurrent CloudEvents POSTs, and
    records in one JSON Lines object in S3."""

    posts: int = PredictorSettings.prediction_log_batch
    object_records: int = PredictorSettings.prediction_log_object_records


def open_sink(
    logging_: PredictionLogging, storage: StorageSpec, sizes: BatchSizes = BatchSizes()
) -> Sink:
    """The sink `spec.logging` names (exactly one of `url` and `storageUri` is set)."""
    spec = logging_.spec
    if spec.url is not None:
        return CloudEventsSink(spec.url, spec.mode, logging_.namespace, sizes.posts)
    if spec.storage_uri is not None:
        return open_json_lines_sink(spec.storage_uri, spec.mode, storage, sizes.object_records)
    raise InvalidSpec("spec.logging needs exactly one sink: spec.logging.url or storageUri")


class PredictionLogger:
    """One replica's prediction log: a bounded queue and the task that empties it."""

    def __init__(
        self,
        model: str,
        version: str,
        on_drop: DropCallback,
        *,
        queue_size: int = PredictorSettings.prediction_log_queue,
        batch_sizes: BatchSizes = BatchSizes(),
        batch_wait_seconds: float = BATCH_WAIT_SECONDS,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.model = model
        self.version = version
        self._on_drop = on_drop
        self._batch_sizes = batch_sizes
        self._batch_wait = batch_wait_seconds
        self._backoff = backoff
        self._queue: asyncio.Queue[PredictionRecord] = asyncio.Queue(queue_size)
        self._configured: tuple[PredictionLogging, StorageSpec] | None = None
        self._sample_rate = 0.0
        self._sink: Sink | None = None
        self._worker: asyncio.Task[None] | None = None
        self._unsent: list[PredictionRecord] = []  # the batch being sent, less what was

    def configure(self, logging_: PredictionLogging | None, storage: StorageSpec) -> None:
        """Take `spec.logging` (None: log nothing); called on every user_config change, so
        nothing happens unless it changed. A sink that cannot be opened (an S3 client
        botocore refuses) turns logging off with an error in the replica's log: logging must
        not fail the replica."""
        wanted = None if logging_ is None else (logging_, storage)
        if wanted == self._configured:
            return
        self._configured = wanted
        sink = None
        if logging_ is not None:
            try:
                sink = open_sink(logging_, storage, self._batch_sizes)
            except (StorageError, InvalidSpec) as error:
                logger.error("prediction log of %s@%s is off: %s", self.model, self.version, error)
        self._sink = sink
        self._sample_rate = 0.0 if sink is None or logging_ is None else logging_.spec.sample_rate

    def sampled(self) -> bool:
        """Whether to log the request being answered: a draw at `spec.logging.sampleRate`."""
        return random.random() < self._sample_rate

    def offer(self, record: PredictionRecord) -> None:
        """Queue a record for the sink; never blocks nor raises (a full queue drops it)."""
        if self._sink is None:
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._drop("queue_full", 1)
            return
        if self._worker is None or self._worker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop here: the record waits for an offer from one
                return
            self._worker = loop.create_task(self._run(), name=f"prediction log {self.model}")

    async def drain(self, timeout_s: float) -> None:
        """A graceful stop: deliver what is queued within `timeout_s`, then drop the rest."""
        worker = self._worker
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        worker.cancel()
        await asyncio.wait([worker])
        self._worker = None
        left = len(self._unsent) + self._queue.qsize()
        self._unsent = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        if left:
            self._drop("stopped", left)

    async def _run(self) -> None:
        """Send batch after batch, for as long as the replica runs."""
        while True:
            batch = [await self._queue.get()]
            self._unsent = batch  # counted from the moment it leaves the queue
            try:
                await self._fill(batch)
                await self._deliver(batch)
            except Exception:  # a bug in a sink must not end logging for good
                logger.exception("prediction log of %s@%s lost a batch", self.model, self.version)
                self._drop("sink_failed", len(self._unsent))
                self._unsent = []
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _fill(self, batch: list[PredictionRecord]) -> None:
        """Add to a batch what comes within the batch wait, up to the batch size: the wait
        ends as soon as the batch can be filled, so a busy replica never waits with its queue
        filling up (and dropping) behind a batch that is already full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_wait
        # Without a sink (logging turned off) the batch is only counted: take all there is.
        limit = self._sink.batch_size if self._sink is not None else self._queue.maxsize
        while self._queue.qsize() < limit - len(batch):
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(left, FILL_POLL_SECONDS))
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _deliver(self, batch: Sequence[PredictionRecord]) -> None:
        """Send a batch until the sink has taken or refused all of it, retrying what it could
        not take; the sink is looked up on every try, so a new one takes over the batch."""
        self._unsent = list(batch)
        delays = self._backoff.delays()
        failing = False
        while self._unsent:
            sink = self._sink
            if sink is None:
                self._drop("disabled", len(self._unsent))
                self._unsent = []
                return
            delivery = await sink.send(self._unsent)
            self._unsent = list(delivery.retry)
            if delivery.refused:
                logger.warning(
                    "prediction log of %s@%s: %d records refused: %s",
                    self.model, self.version, delivery.refused, delivery.problem,
                )  # fmt: skip
                self._drop("sink_failed", delivery.refused)
            if self._unsent:
                delay = next(delays)
                if not failing:  # once per outage, not once per try
                    logger.warning(
                        "prediction log of %s@%s: %s; retrying %d records, queueing new ones",
                        self.model, self.version, delivery.problem, len(self._unsent),
                    )  # fmt: skip
                failing = True
                await asyncio.sleep(delay)
        if failing:
            logger.info("prediction log of %s@%s: the sink is back", self.model, self.version)

    def _drop(self, reason: str, count: int) -> None:
        """Report dropped records; a failing callback must not reach the request path."""
        try:
            self._on_drop(reason, count)
        except Exception:
            logger.exception("prediction log: on_drop(%r, %d) failed", reason, count)
