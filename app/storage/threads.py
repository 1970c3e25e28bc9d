"""Blocking calls (file I/O, boto3, python-swiftclient) off the event loop, for store drivers.

A cancelled await neither stops a worker thread nor, here, keeps a call that is still queued
from running, so clean-up handed to a thread (a cancel, a delete, closing a descriptor) always
completes. Errors pass through unchanged: mapping them to StoreError is the driver's business.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


async def run_in_thread(
    function: Callable[[], T], *, on_abandon: Callable[[T], object] | None = None
) -> T:
    """Runs `function` in a worker thread and returns its result.

    When the awaiting task is cancelled the call still runs to its end. If what it makes must
    not be lost (an open file, a published object, a multipart upload id), `on_abandon` is
    given its result, in a worker thread, once it is done.
    """
    # In the caller's context (asyncio's executor would drop it), so that log lines from the
    # thread name the request they serve.
    future = asyncio.get_running_loop().run_in_executor(
        None, contextvars.copy_context().run, function
    )
    try:
        # Shielded: cancelling the executor's future would also cancel a job not yet started.
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        abandon(future, on_abandon)
        raise


def abandon(future: asyncio.Future[T], on_abandon: Callable[[T], object] | None = None) -> None:
    """Leaves `future` (a thread's call) to finish for nobody: its error is dropped, and its
    result, if it has one, is given to `on_abandon` in a worker thread."""
    future.add_done_callback(functools.partial(_abandoned, on_abandon))


def _abandoned(on_abandon: Callable[[T], object] | None, done: asyncio.Future[T]) -> None:
    if done.cancelled() or done.exception() is not None:  # retrieved: nobody else will
        return
    if on_abandon is not None:
        done.get_loop().run_in_executor(
            None, contextvars.copy_context().run, _quietly, on_abandon, done.result()
        )


def _quietly(function: Callable[[T], object], value: T) -> None:
    try:
        function(value)
    except Exception:
        # Nobody awaits this clean-up, so this log is the only trace; what it failed to remove
        # is left for purge_staging or a scrub.
        log.warning("clean-up after an abandoned store call failed", exc_info=True)
