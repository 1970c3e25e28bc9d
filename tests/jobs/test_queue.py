"""The durable job queue: transactional enqueue, guarded claims, leases, locks and retries."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from app.db.base import utcnow
from app.db.engine import Database
from app.jobs.models import Job, JobStatus
from app.jobs.queue import JobQueue, enqueue
from app.jobs.worker import Worker


def add_jobs(db: Database, count: int, *, lock: str | None = None, name: str = "test.job") -> None:
    with db.session() as session:
        for index in range(count):
            enqueue(session, name, {"index": index}, lock=lock)


def statuses(db: Database) -> list[str]:
    with db.session(write=False) as session:
        return [job.status for job in session.exec(select(Job).order_by(col(Job.id)))]


def test_enqueue_joins_the_callers_transaction(db: Database) -> None:
    def change_that_fails() -> None:
        with db.session() as session:
            enqueue(session, "test.job", {})
            raise RuntimeError("the change that needed the job failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert statuses(db) == []
    add_jobs(db, 1)
    assert statuses(db) == [JobStatus.QUEUED]


def test_claim_runs_oldest_first_and_succeed_finishes(db: Database) -> None:
    add_jobs(db, 3)
    queue = JobQueue(db)
    first = queue.claim("w1")
    assert first is not None
    assert first.payload == {"index": 0}
    assert first.attempts == 1
    assert queue.succeed(first, "w1")
    assert not queue.succeed(first, "w1"), "a finished job cannot be finished twice"
    assert statuses(db) == [JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.QUEUED]


def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    add_jobs(db, 40)
    queue = JobQueue(db)

    def drain(worker: int) -> list[int]:
        mine = []
        while (job := queue.claim(f"w{worker}")) is not None:
            mine.append(job.id)
            queue.succeed(job, f"w{worker}")
        return mine

    with ThreadPoolExecutor(8) as pool:
        claimed = [job_id for ids in pool.map(drain, range(8)) for job_id in ids]
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 40


def _drain_in_process(url: str, name: str, out: Any) -> None:
    queue = JobQueue(Database(url))
    claimed = []
    while (job := queue.claim(name)) is not None:
        claimed.append(job.id)
        queue.succeed(job, name)
    out.put(claimed)


def test_processes_share_the_queue(db: Database, database_url: str) -> None:
    add_jobs(db, 60)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_drain_in_process, args=(database_url, f"p{i}", out))
        for i in range(3)
    ]
    for process in processes:
        process.start()
    claimed = [job_id for _ in processes for job_id in out.get(timeout=60)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 60
    assert set(statuses(db)) == {JobStatus.SUCCEEDED}


def test_an_expired_lease_is_claimed_again(db: Database) -> None:
    add_jobs(db, 1)
    queue = JobQueue(db, lease=timedelta(seconds=30))
    crashed = queue.claim("dead-worker")
    assert crashed is not None
    assert queue.claim("w2") is None, "leased to a live worker"
    with db.session() as session:
        job = session.get(Job, crashed.id)
        assert job is not None
        job.lease_until = utcnow() - timedelta(seconds=1)
        session.add(job)
    again = queue.claim("w2")
    assert again is not None
    assert (again.id, again.attempts) == (crashed.id, 2)
    assert not queue.succeed(crashed, "dead-worker"), "the dead worker lost the job"
    assert queue.succeed(again, "w2")


def test_one_running_job_per_lock(db: Database) -> None:
    add_jobs(db, 2, lock="image-1")
    add_jobs(db, 1, lock="image-2")
    queue = JobQueue(db)
    first = queue.claim("w1")
    second = queue.claim("w2")
    assert first is not None
    assert second is not None
    assert second.payload == {"index": 0}, "image-1's second job waits; image-2's runs"
    assert queue.claim("w3") is None
    queue.succeed(first, "w1")
    third = queue.claim("w3")
    assert third is not None
    assert third.payload == {"index": 1}


def test_failures_retry_with_backoff_then_give_up(db: Database) -> None:
    with db.session() as session:
        enqueue(session, "test.job", {}, max_attempts=2)
    queue = JobQueue(db)
    job = queue.claim("w1")
    assert job is not None
    assert queue.fail(job, "w1", "boom")
    assert queue.claim("w1") is None, "backing off"
    with db.session() as session:
        row = session.exec(select(Job)).one()
        assert (row.status, row.last_error) == (JobStatus.QUEUED, "boom")
        row.run_after = utcnow()
        session.add(row)
    retried = queue.claim("w1")
    assert retried is not None
    assert queue.fail(retried, "w1", "boom again")
    assert statuses(db) == [JobStatus.FAILED]


def test_worker_runs_handlers_and_records_failures(db: Database) -> None:
    seen: list[dict[str, Any]] = []

    async def record(payload: dict[str, Any]) -> None:
        seen.append(payload)

    async def explode(payload: dict[str, Any]) -> None:
        raise ValueError(json.dumps(payload))

    add_jobs(db, 2, name="test.record")
    add_jobs(db, 1, name="test.explode")
    add_jobs(db, 1, name="test.unknown")
    worker = Worker(JobQueue(db), {"test.record": record, "test.explode": explode})

    async def run() -> int:
        count = 0
        while await worker.run_once():
            count += 1
        return count

    assert asyncio.run(run()) == 4
    # Handlers are told which attempt they run (the first here).
    assert seen == [{"index": 0, "attempt": 1}, {"index": 1, "attempt": 1}]
    with db.session(write=False) as session:
        jobs = {job.name: job for job in session.exec(select(Job))}
    assert jobs["test.record"].status == JobStatus.SUCCEEDED
    assert jobs["test.explode"].status == JobStatus.QUEUED
    assert "ValueError" in (jobs["test.explode"].last_error or "")
    assert "no handler" in (jobs["test.unknown"].last_error or "")
