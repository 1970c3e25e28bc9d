"""Runs queued jobs: `run_once` for tests, `run_forever` in `glint worker` and inside the API
process of the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.jobs.queue import ClaimedJob, JobQueue

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Worker:
    def __init__(
        self, queue: JobQueue, handlers: dict[str, Handler], *, poll_interval: float = 1.0
    ):
        self.queue = queue
        self.handlers = handlers
        self.poll_interval = poll_interval
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Look for work now rather than at the next poll (this process enqueued some).
        Callable from any thread: services run in the thread pool."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run_once(self) -> bool:
        """Claims and runs one job; False when there was none."""
        job = await run_in_threadpool(self.queue.claim, self.name)
        if job is None:
            return False
        await self._run(job)
        return True

    async def _run(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.name)
        renewing = asyncio.create_task(self._keep_lease(job))
        try:
            if handler is None:
                raise LookupError(f"no handler for job {job.name!r}")
            await handler(job.payload)
        except Exception as error:  # a failed job is retried, never lost
            log.exception("job %s (%s) attempt %d failed", job.id, job.name, job.attempts)
            await run_in_threadpool(self.queue.fail, job, self.name, repr(error))
        else:
            await run_in_threadpool(self.queue.succeed, job, self.name)
        finally:
            renewing.cancel()

    async def _keep_lease(self, job: ClaimedJob) -> None:
        while True:
            await asyncio.sleep(self.queue.lease.total_seconds() / 3)
            await run_in_threadpool(self.queue.renew, job, self.name)

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                ran = await self.run_once()
            except Exception:  # the database went away: keep trying, do not die
                log.exception("worker %s could not claim a job", self.name)
                ran = False
            if not ran:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
