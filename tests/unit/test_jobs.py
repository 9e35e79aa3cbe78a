"""Asynchronous invocations without Ray: the Prefer header, job records, and a job's life.

`AsyncJobs` runs here on a real event loop against a real folder store, with a clock the test
moves, so expiry and the deadline of a lost job are checked without waiting for them. The S3
store and the path through Serve are tested in tests/ray/test_async_jobs.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rayship.spec import AsyncSpec, StorageSpec
from rayship.storage import StorageError
from rayship.storage.jobs import FolderJobStore, open_job_store
from rayship_predictors.dataplane import Reply
from rayship_predictors.errors import BadRequest, InferenceError, NotFound, TooManyRequests
from rayship_predictors.http import async_wait
from rayship_predictors.jobs import LOST_GRACE_SECONDS, AsyncJobs, JobRecord
from support.s3 import S3Server

SPEC = AsyncSpec(storage_uri="file:///unused", result_ttl_seconds=60, timeout_seconds=30)
OK = Reply(200, b'{"outputs": []}')


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ([], None),
        (["return=minimal"], None),
        (["respond-async"], 0.0),
        (["respond-async, wait=5"], 5.0),
        (["wait=7", "Respond-Async"], 7.0),
        (["respond-async; foo=bar, wait=3"], 3.0),
        (['respond-async, wait="4"'], 4.0),
        (["respond-async, wait=soon"], 0.0),
        (["respond-async, wait=-2"], 0.0),
        (["respond-async, wait=\u00b2"], 0.0),  # a digit to str.isdigit, not to float
    ],
)
def test_prefer_header(headers: list[str], wait: float | None) -> None:
    assert async_wait(headers) == wait


def test_records_round_trip_with_binary_bodies() -> None:
    done = JobRecord("done", 10.0, 70.0, Reply(200, b'{"a": 1}\x00\x01\n\xff', 8))

    assert JobRecord.decode(done.encode()) == done
    running = JobRecord("running", 10.0, 70.0)
    assert JobRecord.decode(running.encode()) == running


def test_open_job_store_keeps_each_model_apart(tmp_path: Path) -> None:
    store = open_job_store(tmp_path.as_uri(), "iris", StorageSpec())

    assert store == FolderJobStore(tmp_path / "iris")


class Clock:
    """Time the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jobs_in(folder: Path, clock: Clock, spec: AsyncSpec = SPEC) -> AsyncJobs:
    jobs = AsyncJobs("iris", clock)
    jobs.configure(spec, FolderJobStore(folder))
    return jobs


def job_id_of(reply: Reply) -> str:
    assert reply.status == 202, reply.body
    body = json.loads(reply.body)
    assert dict(reply.headers)["Location"] == f"/v2/models/iris/jobs/{body['id']}"
    assert body["url"] == dict(reply.headers)["Location"]
    return str(body["id"])


def test_a_call_done_within_the_wait_is_answered_and_not_stored(tmp_path: Path) -> None:
    async def run() -> Reply:
        return OK

    reply = asyncio.run(jobs_in(tmp_path, Clock()).submit(run, wait_s=5))

    assert reply == OK
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_slow_call_becomes_a_job_that_any_replica_can_answer(tmp_path: Path) -> None:
    clock = Clock()

    async def scenario() -> None:
        release = asyncio.Event()

        async def run() -> Reply:
            await release.wait()
            return OK

        accepting = jobs_in(tmp_path, clock)
        other_replica = jobs_in(tmp_path, clock)
        job_id = job_id_of(await accepting.submit(run, wait_s=0))
        assert (await other_replica.answer(job_id)).status == 202
        release.set()
        await accepting.drain()
        assert await other_replica.answer(job_id) == OK
        clock.now += SPEC.result_ttl_seconds + 1
        with pytest.raises(NotFound, match="expired"):
            await other_replica.answer(job_id)

    asyncio.run(scenario())
    assert not list(tmp_path.iterdir()), "an expired record is deleted when asked for"


def test_a_failed_job_answers_its_v2_error(tmp_path: Path) -> None:
    async def scenario() -> Reply:
        async def run() -> Reply:
            await asyncio.sleep(0.05)
            raise BadRequest("input 'x': expected FP32, got INT64")

        jobs = jobs_in(tmp_path, Clock())
        job_id = job_id_of(await jobs.submit(run, wait_s=0))
        await jobs.drain()
        return await jobs.answer(job_id)

    reply = asyncio.run(scenario())

    assert reply.status == 400
    assert json.loads(reply.body) == {"error": "input 'x': expected FP32, got INT64"}


def test_a_job_past_its_timeout_fails_with_504(tmp_path: Path) -> None:
    spec = AsyncSpec(storage_uri="file:///unused", timeout_seconds=1)

    async def scenario() -> Reply:
        async def run() -> Reply:
            await asyncio.sleep(30)
            return OK

        jobs = jobs_in(tmp_path, Clock(), spec)
        job_id = job_id_of(await jobs.submit(run, wait_s=0))
        await asyncio.sleep(1.5)  # the job's own timer runs on the loop's clock
        return await jobs.answer(job_id)

    reply = asyncio.run(scenario())

    assert reply.status == 504
    assert "timeoutSeconds" in json.loads(reply.body)["error"]


def test_over_max_queued_is_429(tmp_path: Path) -> None:
    spec = AsyncSpec(storage_uri="file:///unused", max_queued=2)

    async def scenario() -> None:
        release = asyncio.Event()

        async def run() -> Reply:
            await release.wait()
            return OK

        jobs = jobs_in(tmp_path, Clock(), spec)
        for _ in range(2):
            job_id_of(await jobs.submit(run, wait_s=0))
        with pytest.raises(TooManyRequests, match=r"maxQueued"):
            await jobs.submit(run, wait_s=0)
        release.set()
        await jobs.drain()
        job_id_of(await jobs.submit(run, wait_s=0))  # room again once they finished
        await jobs.drain()

    asyncio.run(scenario())


def test_a_graceful_stop_records_unfinished_jobs_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rayship_predictors.jobs.DRAIN_SECONDS", 0.1)

    async def scenario() -> Reply:
        async def run() -> Reply:
            await asyncio.sleep(30)
            return OK

        stopping = jobs_in(tmp_path, Clock())
        job_id = job_id_of(await stopping.submit(run, wait_s=0))
        await stopping.drain()
        return await jobs_in(tmp_path, Clock()).answer(job_id)

    reply = asyncio.run(scenario())

    assert reply.status == 503
    assert "send the request again" in json.loads(reply.body)["error"]


def test_a_job_whose_replica_crashed_fails_after_its_deadline(tmp_path: Path) -> None:
    clock = Clock()
    job_id = "0" * 32
    deadline = clock.now + SPEC.timeout_seconds
    FolderJobStore(tmp_path).put(job_id, JobRecord("running", deadline, deadline + 60).encode())
    survivor = jobs_in(tmp_path, clock)

    assert asyncio.run(survivor.answer(job_id)).status == 202
    clock.now = deadline + LOST_GRACE_SECONDS + 1
    with pytest.raises(InferenceError, match="was lost") as lost:
        asyncio.run(survivor.answer(job_id))
    assert lost.value.status == 500


@pytest.mark.parametrize("job_id", ["nope", "../../etc/passwd", "A" * 32, "0" * 31])
def test_unknown_or_malformed_job_ids_are_404(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(NotFound):
        asyncio.run(jobs_in(tmp_path, Clock()).answer(job_id))


def test_without_spec_async_requests_are_answered_synchronously(tmp_path: Path) -> None:
    jobs = AsyncJobs("iris")

    async def run() -> Reply:
        await asyncio.sleep(0.05)
        return OK

    assert not jobs.enabled
    assert asyncio.run(jobs.submit(run, wait_s=0)) == OK
    with pytest.raises(NotFound, match=r"spec\.async is not set"):
        asyncio.run(jobs.answer("0" * 32))


def test_the_s3_job_store_on_a_real_s3(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("jobs")
    store = open_job_store(f"s3://{bucket}/results", "iris", s3_server.storage)
    record = JobRecord("done", 1.0, 2.0, Reply(200, b"\x00binary\n")).encode()

    assert store.get("0" * 32) is None
    store.put("0" * 32, record)
    assert store.get("0" * 32) == record
    listed = s3_server.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"results/iris/{'0' * 32}"]
    store.delete("0" * 32)
    store.delete("0" * 32)  # deleting what is gone is no error
    assert store.get("0" * 32) is None


def test_an_unreachable_s3_job_store_is_a_storage_error(private_s3_server: S3Server) -> None:
    store = open_job_store("s3://jobs/results", "iris", private_s3_server.storage)
    private_s3_server.stop()

    with pytest.raises(StorageError, match="s3://jobs/results/iris/"):
        store.get("0" * 32)
