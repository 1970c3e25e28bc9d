"""A worker's heartbeat, for a container healthcheck (`glint worker --check`).

The worker says after every sign that it works (a claim attempt the database answered, a lease
renewed) by when its next sign is due, and the heartbeat file's modification time is set to
that moment: idle, a second or so ahead (the next poll); running a long job, up to the next
lease renewal. A check then needs no knowledge of the worker's settings: the worker is healthy
while the file's time has not passed by more than a grace period. A worker whose loop hangs,
whose database calls hang or fail, or that stopped, stops moving the time forward.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

# How late a sign of life may be before the worker counts as unhealthy: room for a slow claim
# or renewal on a loaded database.
GRACE_SECONDS = 30.0


class Heartbeat:
    def __init__(self, path: Path):
        self.path = path
        self._failing = False

    def beat(self, within: float) -> None:
        """The next sign of life is due within `within` seconds (an AliveHook)."""
        due = time.time() + within
        try:
            try:
                os.utime(self.path, (due, due))
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.touch()
                os.utime(self.path, (due, due))
        except OSError as error:  # the worker works on; its check will say what is wrong
            if not self._failing:
                log.warning("could not write the heartbeat file %s: %s", self.path, error)
            self._failing = True
        else:
            self._failing = False

    def stop(self) -> None:
        """The worker stopped: a check fails from now on."""
        self.path.unlink(missing_ok=True)


def why_unhealthy(
    path: Path, *, grace: float = GRACE_SECONDS, now: float | None = None
) -> str | None:
    """None when the worker beating `path` is alive, else why not."""
    try:
        due = path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat file {path}: the worker is not running (or has not claimed yet)"
    late = (time.time() if now is None else now) - due
    if late > grace:
        return f"the worker's heartbeat ({path}) is {late:.0f} s overdue"
    return None
