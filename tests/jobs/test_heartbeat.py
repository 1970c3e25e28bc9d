"""The worker's heartbeat (`glint worker --check`): after each sign that it works, the worker
moves the file's time to when its next sign is due; it is healthy while that has not passed by
more than the grace period."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.db.engine import Database
from app.jobs.heartbeat import GRACE_SECONDS, Heartbeat, why_unhealthy
from app.jobs.queue import ClaimedJob, JobQueue
from app.jobs.worker import Worker
from tests.jobs.support import add_job


def test_a_beat_promises_the_next_one(tmp_path: Path) -> None:
    heartbeat = Heartbeat(tmp_path / "run" / "heartbeat")
    assert why_unhealthy(heartbeat.path) is not None  # not started yet
    before = time.time()
    heartbeat.beat(100.0)
    due = heartbeat.path.stat().st_mtime
    assert before + 100 <= due <= time.time() + 100
    assert why_unhealthy(heartbeat.path, now=due + GRACE_SECONDS - 1) is None
    late = why_unhealthy(heartbeat.path, now=due + GRACE_SECONDS + 10)
    assert late is not None
    assert "40 s overdue" in late
    heartbeat.stop()
    assert not heartbeat.path.exists()
    heartbeat.stop()  # again: nothing to do


def test_a_beat_that_cannot_be_written_does_not_stop_the_worker(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    Heartbeat(blocked / "heartbeat").beat(1.0)  # its parent is a file: logged, not raised


def test_the_worker_says_when_its_next_sign_of_life_is_due(db: Database) -> None:
    said: list[float] = []

    async def until_renewed(_payload: dict[str, Any]) -> None:
        while len(said) < 2:  # the claim's sign, then a renewal's
            await asyncio.sleep(0.01)

    worker = Worker(
        # A lease no renewal misses on a loaded machine.
        JobQueue(db, lease=timedelta(seconds=1.5)),
        {"test.renewed": until_renewed},
        poll_interval=7.0,
        on_alive=said.append,
    )
    assert not asyncio.run(worker.run_once())
    assert said == [7.0]  # idle: by the next poll

    said.clear()
    add_job(db, name="test.renewed")
    assert asyncio.run(asyncio.wait_for(worker.run_once(), 10))
    # Running a job: by its first lease renewal (a third of the lease, and as long again for the
    # renewal itself), and after each renewal by the next.
    assert len(said) >= 2
    assert said == pytest.approx([1.0] * len(said))


def test_a_worker_that_cannot_claim_gives_no_sign(db: Database) -> None:
    class Unreachable(JobQueue):
        def claim(self, worker: str) -> ClaimedJob | None:
            raise OSError("database down")

    said: list[float] = []
    worker = Worker(Unreachable(db), {}, on_alive=said.append)
    with pytest.raises(OSError, match="database down"):
        asyncio.run(worker.run_once())
    assert said == []
