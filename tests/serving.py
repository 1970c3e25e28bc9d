"""`glint serve` as a real process on a free port, for end-to-end tests (CLI, container)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as a container runtime sends it: a graceful shutdown (uvicorn then re-raises
        the signal, so the exit status is -SIGTERM rather than 0)."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=STOP_TIMEOUT)
        assert status in (0, -signal.SIGTERM), self.output()
        assert "Application shutdown complete" in self.output()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(
    tmp_path: Path,
    host: str = "127.0.0.1",
    settings: Mapping[str, str] | None = None,
    log_name: str = "serve.log",
    options: Sequence[str] = (),
) -> Iterator[Server]:
    """Starts `python -m app.cli [options] serve` with only GLINT_DATA_DIR set (the embedded
    default) and `settings` (GLINT_* variables, and any other environment variables), and waits
    for GET /healthcheck; always stops the process. Talks to it over loopback only."""
    port = free_port(host)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env["GLINT_DATA_DIR"] = str(tmp_path / "data")
    env.update(settings or {})
    log = tmp_path / log_name
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                *options,
                "serve",
                "--host",
                host,
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own process group: the worker processes uvicorn spawns go with it even when
            # the supervisor had to be killed.
            start_new_session=True,
        )
    server = Server(process, port, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"glint serve exited early:\n{server.output()}"
            try:
                if httpx.get(f"{server.base_url}/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"glint serve did not start:\n{server.output()}"
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever outlived the supervisor
