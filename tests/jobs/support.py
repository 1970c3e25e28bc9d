"""Job rows for the queue and worker tests."""

from __future__ import annotations

from app.db.engine import Database
from app.jobs.models import Job
from app.jobs.queue import enqueue


def add_job(
    db: Database, *, lock: str | None = "image-1", max_attempts: int = 5, name: str = "test.job"
) -> int:
    with db.session() as session:
        job = enqueue(session, name, {}, lock=lock, max_attempts=max_attempts)
        session.flush()
        assert job.id is not None
        return job.id


def row(db: Database, job_id: int) -> Job:
    with db.session(write=False) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job
