"""The worker in one process: the lease keeper stops a handler whose job is no longer its own,
and periodic sweeps run alongside the jobs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest
from anyio import to_thread

from app.db.base import utcnow
from app.db.engine import Database
from app.jobs.models import Job, JobStatus
from app.jobs.queue import ClaimedJob, JobQueue
from app.jobs.worker import Handler, Worker
from tests.jobs.support import add_job, row

TIMEOUT = 10.0


class Forever:
    """A handler that runs until cancelled, recording when it started and was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled_at: float | None = None  # wall clock, as the queue's leases

    async def __call__(self, _payload: dict[str, Any]) -> None:
        self.started.set()
        try:
            await asyncio.sleep(TIMEOUT * 2)
        except asyncio.CancelledError:
            self.cancelled_at = time.time()
            raise
        raise AssertionError("never cancelled")


class Renewals(JobQueue):
    """A queue whose renewals do what `renew_with` says (the real renewal by default)."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        super().__init__(db, lease=lease)
        self.calls = 0
        self.renew_with: Callable[[ClaimedJob, str], bool] = super().renew

    def renew(self, job: ClaimedJob, worker: str) -> bool:
        self.calls += 1
        return self.renew_with(job, worker)


def run_once(worker: Worker) -> bool:
    async def bounded() -> bool:
        return await asyncio.wait_for(worker.run_once(), TIMEOUT)

    return asyncio.run(bounded())


def assert_left_running(db: Database, job_id: int, worker: str) -> None:
    """Neither succeeded nor failed by the worker that lost it."""
    job = row(db, job_id)
    assert (job.status, job.worker, job.attempts, job.last_error) == (
        JobStatus.RUNNING,
        worker,
        1,
        None,
    )


def test_a_handler_is_cancelled_once_another_worker_claims_its_job(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = add_job(db)
    handler = Forever()
    queue = JobQueue(db, lease=timedelta(seconds=3))
    worker = Worker(queue, {"test.job": handler})
    thief = JobQueue(db)

    def steal() -> ClaimedJob | None:
        # As if this worker had been paused past its lease and another claimed the job.
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.lease_until = utcnow() - timedelta(seconds=1)
            session.add(job)
        return thief.claim("thief")

    async def scenario() -> ClaimedJob | None:
        running = asyncio.create_task(worker.run_once())
        await asyncio.wait_for(handler.started.wait(), TIMEOUT)
        stolen = await to_thread.run_sync(steal)
        assert await asyncio.wait_for(running, TIMEOUT)
        return stolen

    stolen = asyncio.run(scenario())
    assert stolen is not None
    assert handler.cancelled_at is not None
    job = row(db, job_id)
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "thief", 2)
    assert "another claimed it" in caplog.text
    assert thief.succeed(stolen, "thief")


def test_renewals_that_keep_failing_cancel_the_handler_before_the_lease_ends(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = add_job(db)
    handler = Forever()
    queue = Renewals(db, lease=timedelta(seconds=1.5))

    def unreachable(_job: ClaimedJob, _worker: str) -> bool:
        raise ConnectionError("the database is unreachable")

    queue.renew_with = unreachable
    worker = Worker(queue, {"test.job": handler})
    assert run_once(worker)
    lease_until = row(db, job_id).lease_until
    assert lease_until is not None
    assert handler.cancelled_at is not None
    assert handler.cancelled_at < lease_until.replace(tzinfo=UTC).timestamp(), "stopped in time"
    assert queue.calls == 2, "a failed renewal is retried while the lease allows"
    assert_left_running(db, job_id, worker.name)
    assert "could not be renewed in time" in caplog.text


def test_a_renewal_that_hangs_cancels_the_handler_before_the_lease_ends(db: Database) -> None:
    job_id = add_job(db)
    handler = Forever()
    queue = Renewals(db, lease=timedelta(seconds=1.5))
    release = threading.Event()

    def hangs(_job: ClaimedJob, _worker: str) -> bool:
        release.wait(TIMEOUT)
        return True

    queue.renew_with = hangs
    worker = Worker(queue, {"test.job": handler})
    try:
        assert run_once(worker)
    finally:
        release.set()
    lease_until = row(db, job_id).lease_until
    assert lease_until is not None
    assert handler.cancelled_at is not None
    assert handler.cancelled_at < lease_until.replace(tzinfo=UTC).timestamp(), "stopped in time"
    assert_left_running(db, job_id, worker.name)


def test_renewals_keep_a_job_longer_than_its_lease(db: Database) -> None:
    job_id = add_job(db)
    # Long enough that a renewal (a round trip to the database) is never late on a loaded CI
    # machine; the handler still outlives the lease twice over.
    queue = Renewals(db, lease=timedelta(seconds=1.5))
    rivals: list[ClaimedJob | None] = []

    async def slow(_payload: dict[str, Any]) -> None:
        for _ in range(6):
            await asyncio.sleep(0.5)
            rivals.append(await to_thread.run_sync(JobQueue(db).claim, "rival"))

    worker = Worker(queue, {"test.job": slow})
    assert run_once(worker)
    assert rivals == [None] * 6, "never claimable while renewed"
    assert queue.calls >= 4
    assert row(db, job_id).status == JobStatus.SUCCEEDED


def test_stopping_the_worker_cancels_the_handler_and_leaves_the_job_to_its_lease(
    db: Database,
) -> None:
    job_id = add_job(db)
    handler = Forever()
    worker = Worker(JobQueue(db), {"test.job": handler})

    async def scenario() -> None:
        running = asyncio.create_task(worker.run_once())
        await asyncio.wait_for(handler.started.wait(), TIMEOUT)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, TIMEOUT)

    asyncio.run(scenario())
    assert handler.cancelled_at is not None
    assert_left_running(db, job_id, worker.name)


def _recorder(calls: list[str], label: str, *, fails: bool = False) -> Callable[[], Any]:
    async def sweep() -> None:
        calls.append(label)
        if fails:
            raise RuntimeError(f"{label} failed")

    return sweep


def test_run_sweeps_once_runs_each_and_survives_a_failing_one(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    worker = Worker(
        JobQueue(db),
        {},
        sweeps=[(60, _recorder(calls, "broken", fails=True)), (60, _recorder(calls, "fine"))],
    )
    asyncio.run(worker.run_sweeps_once())
    assert calls == ["broken", "fine"]
    assert "broken failed" in caplog.text


def test_run_forever_sweeps_every_interval_alongside_the_jobs(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    ran = asyncio.Event()

    async def job(_payload: dict[str, Any]) -> None:
        ran.set()

    handlers: dict[str, Handler] = {"test.job": job}
    worker = Worker(
        JobQueue(db),
        handlers,
        poll_interval=0.05,
        sweeps=[(0.05, _recorder(calls, "broken", fails=True)), (0.05, _recorder(calls, "fine"))],
    )
    job_id = add_job(db)

    async def scenario() -> None:
        running = asyncio.create_task(worker.run_forever())
        await asyncio.wait_for(ran.wait(), TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while min(calls.count("broken"), calls.count("fine")) < 3:
            assert not running.done(), "a failing sweep stopped the worker"
            assert time.monotonic() < deadline, calls
            await asyncio.sleep(0.02)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(scenario())
    assert row(db, job_id).status == JobStatus.SUCCEEDED
    assert caplog.text.count("broken failed") >= 3
    assert calls.count("fine") >= 3
