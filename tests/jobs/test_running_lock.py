"""One running job per lock, enforced by the unique `running_lock` column inside the claim."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from app.db.base import utcnow
from app.db.engine import Database
from app.jobs.models import Job, JobStatus
from app.jobs.queue import ClaimedJob, JobQueue
from tests.jobs.support import add_job, row

CLAIMANTS = 16


def update(db: Database, job_id: int, **values: object) -> None:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        for name, value in values.items():
            setattr(job, name, value)
        session.add(job)


def claim(queue: JobQueue, worker: str) -> ClaimedJob:
    job = queue.claim(worker)
    assert job is not None
    return job


@pytest.mark.parametrize("round_", range(5))
def test_claimants_racing_for_one_lock_start_one_job(db: Database, round_: int) -> None:
    locks = [f"image-{round_}-{index}" for index in range(4)]
    for lock in locks:
        for _ in range(3):
            add_job(db, lock=lock)
    queue = JobQueue(db)
    start = threading.Barrier(CLAIMANTS)

    def race(claimant: int) -> ClaimedJob | None:
        start.wait(timeout=30)
        return queue.claim(f"w{claimant}")

    with ThreadPoolExecutor(CLAIMANTS) as pool:
        claimed = [job for job in pool.map(race, range(CLAIMANTS)) if job is not None]
    with db.session(write=False) as session:
        running = session.exec(select(Job).where(col(Job.status) == JobStatus.RUNNING)).all()
    assert sorted(job.lock or "" for job in running) == locks, "exactly one running per lock"
    assert sorted(job.id for job in claimed) == sorted(job.id or 0 for job in running)
    assert all(job.running_lock == job.lock for job in running)


def test_a_stale_candidate_is_refused_and_the_next_one_claimed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if another claimant's commit landed between our select and our update: the unique
    column refuses the update, and the savepoint keeps the transaction usable (PostgreSQL
    would otherwise abort it) for the next candidate."""
    running = add_job(db, lock="image-1")
    waiting = add_job(db, lock="image-1")
    other = add_job(db, lock="image-2")
    queue = JobQueue(db)
    assert claim(queue, "w1").id == running

    def blind_to_locks(
        _self: JobQueue, session: Session, now: datetime, tried: Sequence[int]
    ) -> Job | None:
        query = select(Job).where(col(Job.status) == JobStatus.QUEUED, col(Job.id).not_in(tried))
        return session.exec(query.order_by(col(Job.id))).first()

    monkeypatch.setattr(JobQueue, "_next_candidate", blind_to_locks)
    assert claim(queue, "w2").id == other
    assert (row(db, waiting).status, row(db, waiting).running_lock) == (JobStatus.QUEUED, None)
    assert queue.claim("w3") is None


def test_jobs_without_a_lock_run_side_by_side(db: Database) -> None:
    ids = [add_job(db, lock=None) for _ in range(3)]
    queue = JobQueue(db)
    assert sorted(claim(queue, f"w{index}").id for index in range(3)) == ids
    assert all(row(db, job_id).running_lock is None for job_id in ids)


def test_succeeding_releases_the_lock(db: Database) -> None:
    first, second = add_job(db, lock="image-1"), add_job(db, lock="image-1")
    queue = JobQueue(db)
    job = claim(queue, "w1")
    assert row(db, first).running_lock == "image-1"
    assert queue.claim("w2") is None
    assert queue.succeed(job, "w1")
    assert row(db, first).running_lock is None
    assert claim(queue, "w2").id == second


def test_failing_for_good_releases_the_lock(db: Database) -> None:
    first, second = add_job(db, lock="image-1", max_attempts=1), add_job(db, lock="image-1")
    queue = JobQueue(db)
    assert queue.fail(claim(queue, "w1"), "w1", "boom")
    assert (row(db, first).status, row(db, first).running_lock) == (JobStatus.FAILED, None)
    assert claim(queue, "w2").id == second


def test_a_retry_releases_the_lock_while_it_backs_off(db: Database) -> None:
    first, second = add_job(db, lock="image-1"), add_job(db, lock="image-1")
    queue = JobQueue(db)
    assert queue.fail(claim(queue, "w1"), "w1", "boom")
    assert (row(db, first).status, row(db, first).running_lock) == (JobStatus.QUEUED, None)
    assert claim(queue, "w2").id == second
    update(db, first, run_after=utcnow())
    assert queue.claim("w3") is None, "backed off, and now waiting on the lock"


def test_an_expired_lease_keeps_the_lock_for_its_own_job(db: Database) -> None:
    dead, waiting = add_job(db, lock="image-1"), add_job(db, lock="image-1")
    queue = JobQueue(db)
    crashed = claim(queue, "dead-worker")
    # The waiting job even comes first in the queue's order: the lock still holds it back.
    update(db, waiting, run_after=utcnow() - timedelta(minutes=1))
    update(db, dead, lease_until=utcnow() - timedelta(seconds=1))
    again = claim(queue, "w2")
    assert (again.id, again.attempts) == (dead, 2)
    assert row(db, dead).running_lock == "image-1"
    assert queue.claim("w3") is None
    assert not queue.succeed(crashed, "dead-worker")
    assert queue.succeed(again, "w2")
    assert claim(queue, "w3").id == waiting
