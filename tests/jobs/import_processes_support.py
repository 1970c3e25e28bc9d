"""A small Glint deployment of real processes for tests/jobs/test_import_processes.py.

`Deployment` starts `glint serve` (through tests.serving.serve), `glint worker` and `glint scrub`
as subprocesses that share one database and one data directory holding two file stores,
`local` (the default, and so the staging store) and `cheap`, configured by a TOML file named
by GLINT_CONFIG. `WebServer` is the threaded http.server that web-download fetches from.
Every process it starts is killed when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlmodel import col, select

from app.db.engine import Database
from app.images.imports import IMPORT_JOB
from app.images.models import ImageLocation
from app.jobs.models import TERMINAL_STATUSES, Job
from app.tasks.models import Task
from tests.serving import Server, serve

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0
OCTET = {"Content-Type": "application/octet-stream"}
STORES = ("local", "cheap")
# How long the `slow` downloads wait between their chunks once their fast start is sent.
TRICKLE_PAUSE = 0.1


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def wait_until(
    condition: Callable[[], T | bool | None],
    what: str,
    *,
    seconds: float = 30.0,
    alive: Callable[[], str | None] = lambda: None,
) -> T:
    """Polls `condition` until it returns something truthy (returned), failing after
    `seconds` or as soon as `alive` says that a process died."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value  # type: ignore[return-value]
        problem = alive()
        if problem:
            raise AssertionError(f"while waiting for {what}: {problem}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.05)


# --- the web server web-download fetches from ----------------------------------------------


@dataclass
class WebServer:
    """Serves `files` (path -> bytes). A path in `slow` is sent slowly the first time it is
    fetched: `fast_start` bytes at once, then 16 KiB every TRICKLE_PAUSE seconds (a client that
    goes away ends it); later fetches get the whole body at once. `fetches` records each GET
    (path, time.time()) as it starts, `completed` each whole body sent."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    fast_start: int = 1024 * 1024
    fetches: list[tuple[str, float]] = field(default_factory=list)
    # The GETs whose whole body was sent (path, time.time()).
    completed: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fetch_times(self, path: str) -> list[float]:
        with self.lock:
            return [at for fetched, at in self.fetches if fetched == path]

    def completions(self, path: str) -> list[float]:
        with self.lock:
            return [at for sent, at in self.completed if sent == path]


@contextmanager
def web_server() -> Iterator[WebServer]:
    state = WebServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with state.lock:
                state.fetches.append((self.path, time.time()))
                first = sum(1 for path, _ in state.fetches if path == self.path) == 1
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if self.path in state.slow and first:
                    self.wfile.write(body[: state.fast_start])
                    self.wfile.flush()
                    for start in range(state.fast_start, len(body), 16384):
                        time.sleep(TRICKLE_PAUSE)
                        self.wfile.write(body[start : start + 16384])
                        self.wfile.flush()
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the worker that fetched it was killed
            with state.lock:
                state.completed.append((self.path, time.time()))

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- the Glint processes --------------------------------------------------------------------


@dataclass
class WorkerProcess:
    label: str
    process: subprocess.Popen[bytes]
    log: Path
    heartbeat: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine loses power."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


def pid_of(job: Job) -> int | None:
    """The process id in a job's `worker` (`host:pid:token`)."""
    if not job.worker:
        return None
    return int(job.worker.split(":")[-2])


class Deployment:
    """One database, one data directory (two file stores), and the processes on them."""

    def __init__(self, tmp_path: Path, database_url: str, db: Database, **settings: str):
        self.tmp_path = tmp_path
        self.db = db
        self.data_dir = tmp_path / "data"
        self.roots = {store: self.data_dir / store for store in STORES}
        config = tmp_path / "glint.toml"
        config.write_text(
            '[storage]\ndefault = "local"\n'
            + "".join(
                f'[storage.stores.{store}]\ntype = "file"\npath = "{root}"\n'
                for store, root in self.roots.items()
            )
        )
        self.settings: dict[str, str] = {
            "GLINT_CONFIG": str(config),
            "GLINT_DATABASE__URL": database_url,
            # Only `glint worker` processes run jobs (and the upload-recovery sweep).
            "GLINT_JOBS__RUN_IN_API": "false",
            "GLINT_JOBS__POLL_INTERVAL": "0.2",
            "GLINT_JOBS__LEASE_SECONDS": "10",
            # One server process: a SIGKILL leaves no orphaned server process behind.
            "GLINT_SERVER__WORKERS": "1",
            **settings,
        }
        self.workers: list[WorkerProcess] = []
        self.servers: list[Server] = []
        self._stack = ExitStack()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info and exc_info[0] is not None:
            # Shown with the failure (pytest's captured output of the test).
            print(f"\nthe deployment's logs:\n{self.logs()}")
        try:
            self._stack.close()  # the servers
        finally:
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait(timeout=STOP_TIMEOUT)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
        env["GLINT_DATA_DIR"] = str(self.data_dir)
        env.update(self.settings)
        return env

    # --- processes ----------------------------------------------------------------------

    def serve(self) -> Server:
        """Starts `glint serve` and waits until it answers; stopped (or found dead) at the
        end of the deployment."""
        name = f"serve-{len(self.servers) + 1}.log"
        server = self._stack.enter_context(
            serve(self.tmp_path, settings=self.settings, log_name=name)
        )
        self.servers.append(server)
        return server

    def start_worker(self, label: str) -> WorkerProcess:
        """Starts `glint worker` and waits for its first heartbeat (its first claim attempt)."""
        log, heartbeat = self.tmp_path / f"worker-{label}.log", self.tmp_path / f"{label}.beat"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--heartbeat", str(heartbeat)],
                cwd=self.tmp_path,
                env=self.environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(label, process, log, heartbeat)
        self.workers.append(worker)
        wait_until(heartbeat.exists, f"worker {label} to start", alive=self.problem)
        return worker

    def scrub(self, *options: str) -> str:
        """One `glint scrub` pass; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "scrub", *options],
            cwd=self.tmp_path,
            env=self.environment(),
            capture_output=True,
            timeout=60,
        )
        output = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, output
        return done.stdout.decode()

    def problem(self) -> str | None:
        """Why the deployment cannot go on (a process that should run exited), or None."""
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None and code != -signal.SIGKILL:
                return f"worker {worker.label} exited ({code}):\n{worker.output()}"
        for server in self.servers:
            code = server.process.poll()
            if code is not None and code != -signal.SIGKILL:
                return f"glint serve exited ({code}):\n{server.output()}"
        return None

    def logs(self) -> str:
        parts = [f"--- worker {worker.label}\n{worker.output()}" for worker in self.workers]
        parts += [f"--- {server.log.name}\n{server.output()}" for server in self.servers]
        return "\n".join(parts)

    # --- what the stores hold -------------------------------------------------------------

    def files(self, store: str = "local") -> list[Path]:
        """Every file under a store's directory, its `_staging` subdirectory included."""
        root = self.roots[store]
        return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []

    def all_files(self) -> list[Path]:
        return [path for store in STORES for path in self.files(store)]

    # --- what the database holds ----------------------------------------------------------

    def jobs(self, name: str | None = None) -> list[Job]:
        with self.db.session(write=False) as session:
            query = select(Job).order_by(col(Job.id))
            if name is not None:
                query = query.where(col(Job.name) == name)
            return list(session.exec(query))

    def import_job(self, image_id: str) -> Job:
        (job,) = (job for job in self.jobs(IMPORT_JOB) if f'"{image_id}"' in job.payload)
        return job

    def unfinished_jobs(self) -> list[Job]:
        return [job for job in self.jobs() if job.status not in TERMINAL_STATUSES]

    def tasks(self, image_id: str | None = None) -> list[Task]:
        with self.db.session(write=False) as session:
            query = select(Task).order_by(col(Task.created_at))
            if image_id is not None:
                query = query.where(col(Task.image_id) == image_id)
            return list(session.exec(query))

    def locations(self) -> list[ImageLocation]:
        with self.db.session(write=False) as session:
            return list(session.exec(select(ImageLocation)))


# --- the API, as a client drives it ------------------------------------------------------------


class Api:
    """The v2 API of one server (as the noauth default identity: an admin)."""

    def __init__(self, server: Server):
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, timeout=30)

    def close(self) -> None:
        self.client.close()

    def create(self) -> str:
        response = self.client.post(
            "/v2/images", json={"disk_format": "raw", "container_format": "bare"}
        )
        assert response.status_code == 201, response.text
        image_id: str = response.json()["id"]
        return image_id

    def show(self, image_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v2/images/{image_id}")
        assert response.status_code == 200, response.text
        image: dict[str, Any] = response.json()
        return image

    def status(self, image_id: str) -> str:
        status: str = self.show(image_id)["status"]
        return status

    def upload(self, image_id: str, data: bytes) -> None:
        response = self.client.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)
        assert response.status_code == 204, response.text

    def stage(self, image_id: str, data: bytes) -> None:
        response = self.client.put(f"/v2/images/{image_id}/stage", content=data, headers=OCTET)
        assert response.status_code == 204, response.text

    def start_import(self, image_id: str, body: Mapping[str, Any]) -> None:
        response = self.client.post(f"/v2/images/{image_id}/import", json=body)
        assert response.status_code == 202, response.text

    def download(self, image_id: str) -> httpx.Response:
        return self.client.get(f"/v2/images/{image_id}/file")


@contextmanager
def api(server: Server) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


# --- a body sent slowly, for a server to be killed in the middle of ------------------------------


class SlowBody:
    """A `PUT path` that announces `announced` bytes and sends 64 KiB every `pause` seconds
    from a thread, until the connection breaks (the server died) or `stop`."""

    def __init__(self, port: int, path: str, *, announced: int = 100_000_000, pause: float = 0.02):
        self.sent = 0
        self.ended: BaseException | None = None
        self._stop = threading.Event()
        self._socket = socket.create_connection(("127.0.0.1", port))
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: glint\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {announced}\r\n\r\n"
        )
        self._socket.sendall(head.encode())
        self._pause = pause
        self._announced = announced
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        chunk = os.urandom(65536)
        try:
            while not self._stop.is_set() and self.sent + len(chunk) < self._announced:
                self._socket.sendall(chunk)
                self.sent += len(chunk)
                time.sleep(self._pause)
        except OSError as error:  # the server is gone
            self.ended = error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_TIMEOUT)
        with contextlib.suppress(OSError):
            self._socket.close()
