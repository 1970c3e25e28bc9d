"""Enqueue, claim, succeed, fail: every state change is a guarded UPDATE that checks the row is
still what the caller saw, so any number of processes can share the queue safely.

`enqueue` joins the caller's transaction: a job exists exactly when the change that needs it
committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.db.base import utcnow
from app.db.engine import Database
from app.jobs.models import Job, JobStatus


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    name: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_until: Any


def enqueue(
    session: Session,
    name: str,
    payload: dict[str, Any],
    *,
    lock: str | None = None,
    max_attempts: int = 5,
) -> Job:
    job = Job(name=name, payload=json.dumps(payload), lock=lock, max_attempts=max_attempts)
    session.add(job)
    return job


class JobQueue:
    def __init__(self, db: Database, *, lease: timedelta = timedelta(minutes=5)):
        self.db = db
        self.lease = lease

    def claim(self, worker: str) -> ClaimedJob | None:
        """The oldest runnable job, now leased to `worker`; None when there is nothing to do."""
        now = utcnow()
        with self.db.session() as session:
            candidates = session.exec(
                select(Job)
                .where(
                    sa.or_(
                        sa.and_(col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= now),
                        sa.and_(col(Job.status) == JobStatus.RUNNING, col(Job.lease_until) < now),
                    )
                )
                .order_by(col(Job.run_after), col(Job.id))
                .limit(20)
            ).all()
            for job in candidates:
                if job.lock is not None and self._lock_held(session, job, now):
                    continue
                lease_until = now + self.lease
                attempts = job.attempts + 1
                claimed = session.execute(
                    sa.update(Job)
                    .where(
                        col(Job.id) == job.id,
                        col(Job.status) == job.status,
                        col(Job.attempts) == job.attempts,
                    )
                    .values(
                        status=JobStatus.RUNNING,
                        attempts=attempts,
                        lease_until=lease_until,
                        worker=worker,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    assert job.id is not None
                    return ClaimedJob(
                        id=job.id,
                        name=job.name,
                        payload=json.loads(job.payload),
                        attempts=attempts,
                        max_attempts=job.max_attempts,
                        lease_until=lease_until,
                    )
        return None

    @staticmethod
    def _lock_held(session: Session, job: Job, now: Any) -> bool:
        running = session.exec(
            select(Job.id).where(
                col(Job.lock) == job.lock,
                col(Job.id) != job.id,
                col(Job.status) == JobStatus.RUNNING,
                col(Job.lease_until) >= now,
            )
        ).first()
        return running is not None

    def renew(self, job: ClaimedJob, worker: str) -> bool:
        """Extends the lease; False when the job is no longer this worker's."""
        return self._finish(job, worker, lease_until=utcnow() + self.lease)

    def succeed(self, job: ClaimedJob, worker: str) -> bool:
        return self._finish(job, worker, status=JobStatus.SUCCEEDED, lease_until=None)

    def fail(self, job: ClaimedJob, worker: str, error: str) -> bool:
        """Retries with exponential backoff until max_attempts, then gives up."""
        if job.attempts >= job.max_attempts:
            return self._finish(
                job, worker, status=JobStatus.FAILED, lease_until=None, last_error=error
            )
        backoff = timedelta(seconds=min(2**job.attempts, 300))
        return self._finish(
            job,
            worker,
            status=JobStatus.QUEUED,
            lease_until=None,
            last_error=error,
            run_after=utcnow() + backoff,
        )

    def _finish(self, job: ClaimedJob, worker: str, **values: Any) -> bool:
        with self.db.session() as session:
            result = session.execute(
                sa.update(Job)
                .where(
                    col(Job.id) == job.id,
                    col(Job.status) == JobStatus.RUNNING,
                    col(Job.worker) == worker,
                    col(Job.attempts) == job.attempts,
                )
                .values(updated_at=utcnow(), **values)
            )
            return getattr(result, "rowcount", 0) == 1
