"""Where a benchmark result comes from, recorded in its JSON (shared by the bench scripts, which
run as scripts: bench/ is on their sys.path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def source_commit() -> str | None:
    """The commit of the checkout this script is in, ``-dirty`` if tracked files differ from
    it; None outside a git checkout.  Read-only: no index lock (GIT_OPTIONAL_LOCKS=0)."""
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "-C", here, *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head
