"""Asynchronous invocations: answer within the client's wait, else accept a job and keep its
result where any replica can hand it out.

A request carrying `Prefer: respond-async[, wait=N]` runs as usual for up to N seconds (capped
at `spec.async.timeoutSeconds`). Finished by then, it is answered as if synchronous and nothing
is stored. Otherwise the client gets 202 Accepted with the job's URL, a `running` record goes
to the job store, and the result replaces it when the call ends; `GET` on the job URL, on any
replica, answers 202 while the record says running, then the stored V2 answer (200, or the V2
error with its status), and 404 once the result is older than `resultTtlSeconds`.

What happens to jobs when their replica stops (documented in the README):
- a graceful stop (a rollout, a scale-down, a deleted model) lets running jobs finish for up to
  `DRAIN_SECONDS`, then records the rest as failed (503, "send the request again");
- a crash leaves a `running` record behind: once the job's deadline (acceptance plus
  `timeoutSeconds`) and `LOST_GRACE_SECONDS` have passed, it is answered as failed (500).
Jobs are never re-run on another replica: a model call is not known to be idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from rayship.contract import job_url
from rayship.spec import AsyncSpec
from rayship.storage import StorageError
from rayship.storage.jobs import JobStore
from rayship_predictors.dataplane import Reply
from rayship_predictors.errors import (
    InferenceError,
    NotFound,
    NotReady,
    TimedOut,
    TooManyRequests,
)

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
"""How long a stopping replica lets its running jobs finish: well inside Serve's default
graceful shutdown budget of 20 s, which the replica's own drain also spends."""

LOST_GRACE_SECONDS = 5.0
"""How long past a job's deadline a `running` record is trusted: time for the replica that
ran it to write its final record."""

RETRY_AFTER_SECONDS = "1"

State = Literal["running", "done"]


@dataclass(frozen=True)
class JobRecord:
    """What the store holds for a job: its state and times (epoch seconds), and once done, the
    reply. Stored as one JSON line followed by the reply's body, which may be binary."""

    state: State
    deadline: float
    expires: float
    reply: Reply | None = None

    def encode(self) -> bytes:
        """The stored form."""
        head: dict[str, object] = {
            "state": self.state,
            "deadline": self.deadline,
            "expires": self.expires,
        }
        body = b""
        if self.reply is not None:
            head |= {"status": self.reply.status, "headerLength": self.reply.header_length}
            body = self.reply.body
        return json.dumps(head).encode() + b"\n" + body

    @classmethod
    def decode(cls, data: bytes) -> JobRecord:
        """Read the stored form back."""
        line, _, body = data.partition(b"\n")
        head = json.loads(line)
        reply = None
        if head["state"] == "done":
            reply = Reply(int(head["status"]), body, head.get("headerLength"))
        return cls(head["state"], float(head["deadline"]), float(head["expires"]), reply)


class AsyncJobs:
    """One replica's asynchronous jobs: the ones it runs, and the store that outlives it.

    Unconfigured (no `spec.async`), it accepts nothing and `enabled` is False: requests are
    answered synchronously, as RFC 7240 lets a server ignore a preference.
    """

    def __init__(self, model_name: str, clock: Callable[[], float] = time.time) -> None:
        self.model_name = model_name
        self._clock = clock
        self._spec: AsyncSpec | None = None
        self._store: JobStore | None = None
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        """Whether requests may be answered asynchronously."""
        return self._spec is not None

    @property
    def spec(self) -> AsyncSpec | None:
        """The settings jobs start under now (`spec.async`)."""
        return self._spec

    def configure(self, spec: AsyncSpec | None, store: JobStore | None) -> None:
        """Take new settings; jobs already running finish under the ones they started with."""
        self._spec, self._store = spec, store

    async def submit(self, run: Callable[[], Awaitable[Reply]], wait_s: float) -> Reply:
        """Run `run`; its reply if it ends within `wait_s`, else 202 and a job that keeps it."""
        spec, store = self._spec, self._store
        if spec is None or store is None:
            return await run()
        if len(self._running) >= spec.max_queued:
            raise TooManyRequests(
                f"model {self.model_name!r} already runs {spec.max_queued} asynchronous jobs on "
                "this replica (spec.async.maxQueued); retry later"
            )
        call = asyncio.ensure_future(run())
        try:
            return await asyncio.wait_for(asyncio.shield(call), min(wait_s, spec.timeout_seconds))
        except TimeoutError:
            pass
        job_id = uuid.uuid4().hex
        deadline = self._clock() + spec.timeout_seconds
        record = JobRecord("running", deadline, deadline + spec.result_ttl_seconds)
        try:
            await self._put(store, job_id, record)
        except (StorageError, OSError) as error:
            call.cancel()
            raise NotReady(f"cannot accept an asynchronous job: {error}") from None
        self._running[job_id] = asyncio.create_task(
            self._finish(job_id, call, spec, store, deadline)
        )
        return self._accepted(job_id)

    async def answer(self, job_id: str) -> Reply:
        """What `GET` on a job's URL answers."""
        if job_id in self._running:
            return self._accepted(job_id)
        store = self._store
        if store is None:
            raise NotFound(
                f"model {self.model_name!r} keeps no asynchronous jobs (spec.async is not set)"
            )
        if not _is_job_id(job_id):
            raise NotFound(f"job {job_id!r} not found")
        try:
            data = await asyncio.to_thread(store.get, job_id)
        except (StorageError, OSError) as error:
            raise NotReady(f"cannot read job {job_id}: {error}") from None
        now = self._clock()
        record = JobRecord.decode(data) if data is not None else None
        if record is None or now > record.expires:
            if record is not None:
                await asyncio.to_thread(store.delete, job_id)
            raise NotFound(f"job {job_id} not found: unknown, or its result has expired")
        if record.reply is not None:
            return record.reply
        if now > record.deadline + LOST_GRACE_SECONDS:
            raise InferenceError(
                f"job {job_id} was lost: the replica running it stopped before it finished; "
                "send the request again"
            )
        return self._accepted(job_id)

    async def drain(self) -> None:
        """On a graceful stop: let running jobs finish for a while, then record the rest as
        failed, so their clients hear so at once instead of after the deadline."""
        tasks = list(self._running.values())
        if not tasks:
            return
        await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish(
        self,
        job_id: str,
        call: asyncio.Future[Reply],
        spec: AsyncSpec,
        store: JobStore,
        deadline: float,
    ) -> None:
        """Wait for the call (until the deadline), then store what it answered."""
        try:
            reply = await asyncio.wait_for(call, max(0.0, deadline - self._clock()))
        except TimeoutError:
            reply = Reply.error(
                TimedOut(f"job {job_id} ran longer than {spec.timeout_seconds} s (timeoutSeconds)")
            )
        except asyncio.CancelledError:
            reply = Reply.error(
                NotReady(
                    f"job {job_id} did not finish: its replica stopped; send the request again"
                )
            )
        except InferenceError as error:
            reply = Reply.error(error)
        except Exception:
            logger.exception("asynchronous job %s of %s failed", job_id, self.model_name)
            reply = Reply.error(InferenceError("internal error; see the replica's log"))
        record = JobRecord("done", deadline, self._clock() + spec.result_ttl_seconds, reply)
        try:
            await self._put(store, job_id, record)
        except (StorageError, OSError):
            logger.exception("cannot store the result of job %s of %s", job_id, self.model_name)
        finally:
            self._running.pop(job_id, None)

    @staticmethod
    async def _put(store: JobStore, job_id: str, record: JobRecord) -> None:
        await asyncio.to_thread(store.put, job_id, record.encode())

    def _accepted(self, job_id: str) -> Reply:
        """202 with the job's URL, in `Location` and in the body."""
        url = job_url(self.model_name, job_id)
        accepted = Reply.json(
            {"id": job_id, "model_name": self.model_name, "status": "running", "url": url}, 202
        )
        headers = (
            ("Location", url),
            ("Retry-After", RETRY_AFTER_SECONDS),
            ("Preference-Applied", "respond-async"),
        )
        return Reply(accepted.status, accepted.body, headers=headers)


def _is_job_id(value: str) -> bool:
    """Job ids are 32 lowercase hex digits (`uuid4().hex`); nothing else is looked up."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
