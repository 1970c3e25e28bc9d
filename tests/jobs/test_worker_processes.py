"""Two real worker processes share the database; one of them loses the lease of the job it runs.
The job must end succeeded exactly once, by the other, and the loser's handler must be stopped
without recording an outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from sqlmodel import select

from app.db.engine import Database
from app.jobs.models import Job, JobStatus
from app.jobs.queue import enqueue
from tests.jobs.worker_process import SLOW_JOB, read_record

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    record: Path
    log: Path

    def events(self) -> list[tuple[str, float]]:
        return read_record(self.record)

    def first(self, event: str) -> float | None:
        return next((at for name, at in self.events() if name == event), None)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def worker_processes(tmp_path: Path, database_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts `tests.jobs.worker_process` processes on demand; kills every one at the end."""
    started: list[WorkerProcess] = []

    def start(
        label: str, *, lease: float, handler_seconds: float, lose_database: bool = False
    ) -> WorkerProcess:
        record, log = tmp_path / f"{label}.record", tmp_path / f"{label}.log"
        command = [
            sys.executable,
            "-m",
            "tests.jobs.worker_process",
            database_url,
            str(record),
            f"--lease={lease}",
            f"--handler-seconds={handler_seconds}",
        ]
        if lose_database:
            command.append("--lose-database-after-claim")
        with log.open("wb") as sink:
            process = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        started.append(WorkerProcess(process, record, log))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=TIMEOUT)


def wait_until(condition: Callable[[], object], what: str, *workers: WorkerProcess) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        for worker in workers:
            assert worker.process.poll() is None, f"a worker exited:\n{worker.output()}"
        if time.monotonic() > deadline:
            logs = "\n".join(worker.output() for worker in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)


def the_job(db: Database) -> Job:
    with db.session(write=False) as session:
        return session.exec(select(Job)).one()


def add_slow_job(db: Database) -> None:
    with db.session() as session:
        enqueue(session, SLOW_JOB, {}, lock="image-1")


def assert_succeeded_once_by(db: Database, winner: WorkerProcess) -> None:
    wait_until(lambda: the_job(db).status == JobStatus.SUCCEEDED, "the job to succeed", winner)
    job = the_job(db)
    assert f":{winner.process.pid}:" in (job.worker or "")
    assert (job.attempts, job.last_error, job.running_lock) == (2, None, None)


def test_a_worker_that_cannot_renew_stops_before_its_lease_runs_out(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    add_slow_job(db)
    with worker_processes(tmp_path, database_url) as start:
        a = start("a", lease=1.5, handler_seconds=60, lose_database=True)
        wait_until(lambda: a.first("start"), "worker A to start the job", a)
        a_lease_until = the_job(db).lease_until  # A renews no more
        assert a_lease_until is not None
        b = start("b", lease=30, handler_seconds=0.5)
        wait_until(lambda: b.first("end"), "worker B to finish the job", a, b)
        assert_succeeded_once_by(db, b)

        a_cancelled, b_started = a.first("cancelled"), b.first("start")
        assert a_cancelled is not None, a.output()
        assert b_started is not None
        assert a_cancelled < a_lease_until.replace(tzinfo=UTC).timestamp(), "stopped in time"
        assert a_cancelled < b_started, "the two runs overlapped"
        assert [event for event, _ in a.events()] == ["start", "cancelled"]
        assert [event for event, _ in b.events()] == ["start", "end"]
        assert "lost the lease" in a.output()


def test_a_worker_paused_past_its_lease_cancels_its_handler_when_it_resumes(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    add_slow_job(db)
    with worker_processes(tmp_path, database_url) as start:
        a = start("a", lease=1.5, handler_seconds=60)
        wait_until(lambda: a.first("start"), "worker A to start the job", a)
        os.kill(a.process.pid, signal.SIGSTOP)
        b = start("b", lease=30, handler_seconds=3)
        wait_until(lambda: b.first("start"), "worker B to claim the job after A's lease", b)
        os.kill(a.process.pid, signal.SIGCONT)
        resumed = time.time()
        wait_until(lambda: a.first("cancelled"), "worker A to cancel its handler", a, b)
        wait_until(lambda: b.first("end"), "worker B to finish the job", a, b)
        assert_succeeded_once_by(db, b)

        a_cancelled, b_ended = a.first("cancelled"), b.first("end")
        assert a_cancelled is not None
        assert b_ended is not None
        # A's handler never ran while it was stopped; once resumed it is cancelled before
        # anything else it awaited could complete, well before B's run ends.
        assert a_cancelled < b_ended
        assert a_cancelled - resumed < 1.0
        assert [event for event, _ in a.events()] == ["start", "cancelled"]
        assert [event for event, _ in b.events()] == ["start", "end"]
        assert "lost the lease" in a.output()
