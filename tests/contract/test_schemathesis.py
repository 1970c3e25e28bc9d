"""openapi/v2.json against a live server: schemathesis, every check on, bounded and seeded.

A failure here means the document and the server disagree (or the server answered 5xx): fix
whichever is wrong. The output names each failure with a curl command that reproduces it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from app.db.engine import Database
from tests.serving import serve

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Examples per operation: with the coverage and stateful phases about 2,400 requests, a minute
# or so here.
EXAMPLES = 75
SEED = 7
RUN_TIMEOUT = 300


def test_the_document_holds_against_the_server(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    with serve(tmp_path, settings={"GLINT_DATABASE__URL": database_url}) as server:
        run = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                str(ROOT / "openapi" / "v2.json"),
                "--url",
                server.base_url,
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.hooks"},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    report = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    assert run.returncode == 0, report
    generated = re.search(r"(\d+) generated", report)
    assert generated is not None, report
    assert int(generated.group(1)) >= 2000, report
    # What the server saw (its access log), whatever schemathesis counts as a test case.
    assert server.output().count("glint.access") >= 2000
    # Schemathesis counts a 5xx as a failure; this also catches one it did not attribute.
    assert "unexpected error" not in server.output(), server.output()
