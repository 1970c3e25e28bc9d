"""Runs queued jobs: `run_once` for tests, `run_forever` in `glint worker` and inside the API
process of the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio import to_thread

from app import logs
from app.jobs.queue import ClaimedJob, JobQueue
from app.metrics import NO_METRICS, Metrics

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
Sweep = Callable[[], Awaitable[None]]
# Told after each sign that the worker works (a claim attempt answered, a lease renewed): the
# most seconds until the next such sign, as long as the worker stays healthy.
AliveHook = Callable[[float], None]


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: dict[str, Handler],
        *,
        poll_interval: float = 1.0,
        sweeps: Sequence[tuple[float, Sweep]] = (),
        metrics: Metrics = NO_METRICS,
        on_alive: AliveHook | None = None,
    ):
        """`sweeps`: (interval in seconds, coroutine function) pairs that `run_forever` runs at
        start and then every interval alongside the jobs, such as recovering what dead
        processes left behind. `on_alive`: see AliveHook (`glint worker`'s heartbeat)."""
        self.queue = queue
        self.handlers = handlers
        self.poll_interval = poll_interval
        self.sweeps = tuple(sweeps)
        self.metrics = metrics
        self.on_alive = on_alive
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
        # Before the claim: the lease this worker counts on ends no later than the database's.
        claimed_at = time.monotonic()
        job = await to_thread.run_sync(self.queue.claim, self.name)
        if job is None:
            self._alive(self.poll_interval)
            return False
        # Its next sign of life is the first renewal of the lease: a third of the lease from now,
        # and as long again for the renewal to be answered.
        self._alive(2 * self.queue.lease.total_seconds() / 3)
        # The job's log lines name it, its image, and the request that enqueued it.
        with logs.bound(
            job=job.name,
            job_id=job.id,
            request_id=_text(job.payload.get("request_id")),
            image_id=_text(job.payload.get("image_id")),
        ):
            await self._run(job, lease_ends=claimed_at + self.queue.lease.total_seconds())
        return True

    def _alive(self, within: float) -> None:
        if self.on_alive is not None:
            self.on_alive(within)

    async def run_sweeps_once(self) -> None:
        for _interval, sweep in self.sweeps:
            await self._sweep(sweep)

    async def _run(self, job: ClaimedJob, *, lease_ends: float) -> None:
        handler = self.handlers.get(job.name)
        if handler is None:
            await self._fail(job, LookupError(f"no handler for job {job.name!r}"))
            return
        # Which attempt this is (1 for the first), for handlers that clean up after a dead one.
        payload = {**job.payload, "attempt": job.attempts}
        running = asyncio.create_task(_call(handler, payload), name=f"job {job.id} {job.name}")
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(job, running, lost, lease_ends))
        error: Exception | None = None
        try:
            await running
        except asyncio.CancelledError:
            if not lost.is_set() or _stopping():
                raise  # this worker is stopping: the job runs again once its lease ends
        except Exception as raised:
            error = raised
        finally:
            keeper.cancel()
            running.cancel()
        if lost.is_set():
            return  # the job may be another worker's by now: this run's outcome is not ours
        if error is not None:
            await self._fail(job, error)
        else:
            if await to_thread.run_sync(self.queue.succeed, job, self.name):
                log.info("job %s (%s) attempt %d succeeded", job.id, job.name, job.attempts)

    async def _fail(self, job: ClaimedJob, error: Exception) -> None:
        log.error(
            "job %s (%s) attempt %d failed",
            job.id,
            job.name,
            job.attempts,
            exc_info=error,
        )
        self.metrics.job_failed(job.name)
        await to_thread.run_sync(self.queue.fail, job, self.name, repr(error))

    async def _keep_lease(
        self, job: ClaimedJob, running: asyncio.Task[None], lost: asyncio.Event, lease_ends: float
    ) -> None:
        """Renews every third of the lease; cancels `running` as soon as the job may no longer
        be this worker's, so that no two workers run it at once."""
        lease = self.queue.lease.total_seconds()
        interval = lease / 3
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            if started >= lease_ends:
                # This process was paused or its loop blocked past the lease: another worker
                # may already be running the job.
                reason = "the lease ran out before it could be renewed"
                break
            renewed: bool | None = None
            # A renewal that hangs (the database out of reach) counts as failed after one
            # interval, so that the handler still stops before the lease ends.
            with anyio.move_on_after(min(interval, lease_ends - started)):
                try:
                    renewed = await to_thread.run_sync(
                        self.queue.renew, job, self.name, abandon_on_cancel=True
                    )
                except Exception:
                    log.warning("job %s: could not renew its lease", job.id, exc_info=True)
            if renewed is False:
                reason = "it is no longer this worker's (another claimed it)"
                break
            if renewed:
                lease_ends = started + lease
                self._alive(2 * interval)
            elif time.monotonic() + interval >= lease_ends:
                # Stop while the lease still holds, before anyone else can claim the job.
                reason = "it could not be renewed in time"
                break
        log.error(
            "worker %s lost the lease of job %s (%s) attempt %d: %s; cancelling its handler",
            self.name,
            job.id,
            job.name,
            job.attempts,
            reason,
        )
        lost.set()
        running.cancel()

    async def _sweep(self, sweep: Sweep) -> None:
        try:
            await sweep()
        except Exception:  # the next interval tries again; the jobs keep running meanwhile
            log.exception(
                "worker %s: sweep %s failed", self.name, getattr(sweep, "__qualname__", sweep)
            )

    async def _sweep_forever(self, interval: float, sweep: Sweep) -> None:
        while True:
            await self._sweep(sweep)
            await asyncio.sleep(interval)

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            for interval, sweep in self.sweeps:
                group.create_task(self._sweep_forever(interval, sweep))
            group.create_task(self._claim_forever())

    async def _claim_forever(self) -> None:
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


async def _call(handler: Handler, payload: dict[str, Any]) -> None:
    await handler(payload)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _stopping() -> bool:
    """Whether the current task was asked to stop, as opposed to a task it awaited being
    cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
