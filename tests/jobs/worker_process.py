"""A real worker process for the tests: `python -m tests.jobs.worker_process URL RECORD ...`.

It runs `Worker.run_forever` on the given database with one handler, `test.slow`, which appends
`start`, `end` or `cancelled` and the wall-clock time to RECORD (one file per process, so lines
never interleave). Times are `time.time()`: comparable across processes and with the queue's
leases, which are wall-clock too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.db.engine import Database
from app.jobs.queue import ClaimedJob, JobQueue
from app.jobs.worker import Worker

SLOW_JOB = "test.slow"


class LosesTheDatabase(JobQueue):
    """Claims one job, then cannot reach the database any more: renewals (and claims) fail."""

    reachable = True

    def claim(self, worker: str) -> ClaimedJob | None:
        self._check()
        job = super().claim(worker)
        self.reachable = job is None
        return job

    def renew(self, job: ClaimedJob, worker: str) -> bool:
        self._check()
        return super().renew(job, worker)

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("the database is unreachable (injected)")


def read_record(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        event, _, at = line.partition(" ")
        events.append((event, float(at)))
    return events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("record", type=Path)
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--handler-seconds", type=float, required=True)
    parser.add_argument("--lose-database-after-claim", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def record(event: str) -> None:
        with args.record.open("a") as sink:
            sink.write(f"{event} {time.time()!r}\n")

    async def slow(_payload: dict[str, Any]) -> None:
        record("start")
        try:
            await asyncio.sleep(args.handler_seconds)
        except asyncio.CancelledError:
            record("cancelled")
            raise
        record("end")

    queue_type = LosesTheDatabase if args.lose_database_after_claim else JobQueue
    db = Database(args.url)
    queue = queue_type(db, lease=timedelta(seconds=args.lease))
    worker = Worker(queue, {SLOW_JOB: slow}, poll_interval=0.05)
    logging.getLogger(__name__).info("worker %s started", worker.name)
    try:
        asyncio.run(worker.run_forever())
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
