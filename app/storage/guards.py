"""What every driver's writer refuses, whatever it writes to."""

from __future__ import annotations

from app.storage.errors import StoreError


class WriterGuards:
    """distribution's fileWriter guards: after commit or cancel nothing more is accepted, and
    after a failed write only cancel is (the object would hold an unknown prefix). A writer
    sets the flags; every method but `cancel` calls `_check_open` first."""

    _committed = False
    _cancelled = False
    _failed = False

    def _check_open(self) -> None:
        if self._committed:
            raise StoreError("writer already committed")
        if self._cancelled:
            raise StoreError("writer already cancelled")
        if self._failed:
            raise StoreError("an earlier write failed; the writer can only be cancelled")
