"""The durable job table: background work lives here, never only in memory."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db.base import MYSQL_TABLE_OPTIONS, LongText, Timestamp, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class Job(SQLModel, table=True):
    __tablename__ = "job"
    __table_args__ = (
        # What a worker asks for: runnable jobs, oldest first.
        sa.Index("ix_job_status_run_after", "status", "run_after"),
        sa.Index("ix_job_lock_status", "lock", "status"),
        # Set to `lock` while the job is claimed: the database itself refuses a second running
        # job with the same lock, whatever the claimants' isolation level.
        sa.UniqueConstraint("running_lock"),
        MYSQL_TABLE_OPTIONS,
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    payload: str = Field(sa_column=sa.Column(LongText, nullable=False))  # JSON
    # At most one running job per lock (an image id, typically).
    lock: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    running_lock: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    status: str = Field(
        default=JobStatus.QUEUED, sa_column=sa.Column(sa.String(16), nullable=False)
    )
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    max_attempts: int = Field(default=5, sa_column=sa.Column(sa.Integer, nullable=False))
    run_after: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    # A running job whose lease has run out belongs to a dead worker: it is claimed again.
    lease_until: datetime | None = Field(default=None, sa_column=sa.Column(Timestamp))
    worker: str | None = Field(default=None, sa_column=sa.Column(sa.String(128)))
    last_error: str | None = Field(default=None, sa_column=sa.Column(LongText))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
