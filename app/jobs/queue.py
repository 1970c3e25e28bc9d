"""Enqueue, claim, succeed, fail: every state change is a guarded UPDATE that checks the row is
still what the caller saw, so any number of processes can share the queue safely.

`enqueue` joins the caller's transaction: a job exists exactly when the change that needs it
committed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app import logs
from app.db.base import utcnow
from app.db.engine import Database
from app.jobs.models import Job, JobStatus

# How many candidates one claim tries before giving up until the next poll. Candidates are
# refused only when their lock was taken by a claim that committed after our select, so a few
# tries suffice; the bound keeps a claim's transaction (and the rows it locks) short.
_CLAIM_TRIES = 10


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    name: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_until: datetime


def enqueue(
    session: Session,
    name: str,
    payload: dict[str, Any],
    *,
    lock: str | None = None,
    max_attempts: int = 5,
) -> Job:
    """The payload also records the request being served, if any, as `request_id`: the
    worker's log lines about the job then name the request that caused it."""
    request_id = logs.current().request_id
    if request_id is not None and "request_id" not in payload:
        payload = {**payload, "request_id": request_id}
    job = Job(name=name, payload=json.dumps(payload), lock=lock, max_attempts=max_attempts)
    session.add(job)
    return job


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(col(Job.status) == JobStatus.QUEUED, col(Job.run_after) <= now)


def _abandoned(now: datetime) -> sa.ColumnElement[bool]:
    """Running, but its worker died: the lease ran out without a renewal."""
    return sa.and_(col(Job.status) == JobStatus.RUNNING, col(Job.lease_until) < now)


class JobQueue:
    def __init__(self, db: Database, *, lease: timedelta = timedelta(minutes=5)):
        self.db = db
        self.lease = lease

    def claim(self, worker: str) -> ClaimedJob | None:
        """A job whose worker died, else the oldest queued one, now leased to `worker`; None
        when there is nothing to do.

        One running job per lock is the unique `running_lock` column's doing: the claiming
        UPDATE copies `lock` into it, and the database refuses a second row with the same value
        whatever the claimants' isolation level. A running job whose lease ran out keeps its
        `running_lock`, so it alone can be claimed again (the UPDATE rewrites the same value in
        the same row); other jobs of its lock wait until it succeeds or fails.
        """
        now = utcnow()
        lease_until = now + self.lease
        tried: list[int] = []
        with self.db.session() as session:
            if self.db.url.get_backend_name() == "mysql":
                # InnoDB's REPEATABLE READ keeps the lock of every row a locking read examined,
                # not only of the one it returns: concurrent claimants would skip them all.
                session.connection(execution_options={"isolation_level": "READ COMMITTED"})
            for _ in range(_CLAIM_TRIES):
                job = self._next_candidate(session, now, tried)
                if job is None:
                    return None
                assert job.id is not None
                tried.append(job.id)
                attempts = job.attempts + 1
                try:
                    # A savepoint: on PostgreSQL a refused UPDATE would otherwise abort the
                    # whole transaction, and with it the next candidate's try.
                    with session.begin_nested():
                        claimed = session.execute(
                            sa.update(Job)
                            .where(
                                col(Job.id) == job.id,
                                col(Job.attempts) == job.attempts,
                                # Checked again: a renewal may have landed since the select.
                                sa.or_(_due(now), _abandoned(now)),
                            )
                            .values(
                                status=JobStatus.RUNNING,
                                running_lock=job.lock,
                                attempts=attempts,
                                lease_until=lease_until,
                                worker=worker,
                                updated_at=now,
                            )
                            .execution_options(synchronize_session=False)
                        )
                except sa.exc.IntegrityError:
                    continue  # another job of this lock started running after our select
                if getattr(claimed, "rowcount", 0) == 1:
                    return ClaimedJob(
                        id=job.id,
                        name=job.name,
                        payload=json.loads(job.payload),
                        attempts=attempts,
                        max_attempts=job.max_attempts,
                        lease_until=lease_until,
                    )
        return None

    def _next_candidate(self, session: Session, now: datetime, tried: Sequence[int]) -> Job | None:
        # One query per status, not one with OR: each then walks ix_job_status_run_after in
        # order and stops at the first row it can lock, instead of sorting (and, on MySQL,
        # locking) every runnable row.
        for runnable in (_abandoned(now), _due(now)):
            job = session.exec(self._candidates(runnable, tried)).first()
            if job is not None:
                return job
        return None

    def _candidates(
        self, runnable: sa.ColumnElement[bool], tried: Sequence[int]
    ) -> SelectOfScalar[Job]:
        other = aliased(Job)
        query = (
            select(Job)
            .where(
                runnable,
                col(Job.id).not_in(tried),
                # Not the enforcement (the unique column is): it keeps the jobs that wait on a
                # running lock from using up the claim's tries.
                sa.or_(
                    col(Job.lock).is_(None),
                    ~sa.exists().where(
                        col(other.running_lock) == col(Job.lock), col(other.id) != col(Job.id)
                    ),
                ),
            )
            .order_by(col(Job.run_after), col(Job.id))
            .limit(1)
        )
        if self.db.is_sqlite:
            # No row locks: SQLite's writers are serialised and the UPDATE's guard suffices.
            return query
        # Concurrent claimants each take a different row instead of queueing on the first.
        return query.with_for_update(skip_locked=True)

    def counts(self) -> dict[tuple[str, str], int]:
        """How many jobs there are by (name, status), but for those that succeeded (they stay
        in the table and only grow)."""
        with self.db.session(write=False) as session:
            rows = session.execute(
                sa.select(col(Job.name), col(Job.status), sa.func.count())
                .where(col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED]))
                .group_by(col(Job.name), col(Job.status))
            )
            return {(name, status): count for name, status, count in rows}

    def renew(self, job: ClaimedJob, worker: str) -> bool:
        """Extends the lease; False when the job is no longer this worker's."""
        return self._finish(job, worker, lease_until=utcnow() + self.lease)

    def succeed(self, job: ClaimedJob, worker: str) -> bool:
        return self._finish(
            job, worker, status=JobStatus.SUCCEEDED, lease_until=None, running_lock=None
        )

    def fail(self, job: ClaimedJob, worker: str, error: str) -> bool:
        """Retries with exponential backoff until max_attempts, then gives up."""
        if job.attempts >= job.max_attempts:
            return self._finish(
                job,
                worker,
                status=JobStatus.FAILED,
                lease_until=None,
                running_lock=None,
                last_error=error,
            )
        backoff = timedelta(seconds=min(2**job.attempts, 300))
        return self._finish(
            job,
            worker,
            status=JobStatus.QUEUED,
            lease_until=None,
            # Released while backing off: the lock's other jobs may run meanwhile.
            running_lock=None,
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
