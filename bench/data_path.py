"""Image-data benchmark: upload / download throughput of Images-v2 endpoints
(Glint and the real Glance) next to this machine's limits, all in one run.

Run on demand, never in CI.  One run

1. writes a file of ``--size-mib`` MiB (default 1024) of random bytes into
   ``--work-dir`` (which should be on the same file system as the servers' data
   directories), or uses ``--file``; its MD5 and SHA-512 are computed locally;
2. measures the machine's limits on that file system, each ``--runs`` times
   (default 3, median reported; MB = 10^6 bytes):

   * write the size with ``fsync`` (8 MiB writes, fsync included in the time);
   * read the file back, page cache warm, and cold (after
     ``echo 3 > /proc/sys/vm/drop_caches``) when ``--drop-caches`` is given;
   * Python ``hashlib`` over the file (8 MiB ``readinto`` batches from the
     page-cached file): md5, sha512, md5 + sha512 in one pass in one thread,
     and md5 + sha512 in two threads (each thread hashes the same batches;
     hashlib releases the GIL) -- the "two-thread hash limit";

3. for every target (``--glint URL``, ``--glance URL``) uploads the file with
   curl, ``--runs`` times with ``Content-Length`` (``curl -T file -H 'Expect:'
   -X PUT``) and ``--runs`` times chunked (``-H 'Transfer-Encoding: chunked'``),
   checks after each upload that the image is ``active`` with ``size``,
   ``checksum`` (MD5) and ``os_hash_value`` (SHA-512) equal to the local
   values, and downloads each Content-Length-uploaded image with curl to
   ``/dev/null`` (size and status checked).  The targets take turns run by run
   (the order alternates), so both see the machine and the page cache in the
   same state; with ``--drop-caches`` the page cache is dropped before every
   upload, for every target.  Each image is deleted after its run;
4. uploads ``--rss-mib`` MiB (default 4096) to each target whose server process
   is known (``--glint-pid`` / ``--glance-pid``, else the process listening on
   the URL's port), streamed chunked through a pipe (``cat file file ... |
   curl -T -``), while a thread samples ``VmRSS`` (and PSS) of the server
   process and all its descendants every 50 ms: the peak of the sum is the
   "peak RSS";
5. prints a table, the ratios against the project's targets (Glint upload /
   two-thread hash limit >= 0.45, Glint upload / Glance upload >= 2, Glint
   download / Glance download >= 1.25, Glint peak RSS < 200 MB) and, with
   ``--json``, writes every figure to a file.

Each measurement also records the CPU time the server process tree, this
client (with curl) and everything else on the machine used ("other": other
processes, but also kernel threads and softirq time, e.g. writeback and
loopback networking), since the machine may be shared; ``--wait-quiet SECONDS``
waits before each measurement until the CPUs are >= 90 % idle.

Identity is passed the keystone-less way (``X-Identity-Status: Confirmed``,
``X-Project-Id``, ``X-User-Id``, ``X-Roles``), which both Glint and the Glance
started by ``bench/glance/`` ("headers" paste flavor) accept.

Examples::

    python bench/data_path.py --glance http://127.0.0.1:9496 --work-dir /some/dir
    python bench/data_path.py --glint http://127.0.0.1:9396 --glance http://127.0.0.1:9496 \\
        --work-dir /some/dir --drop-caches --json bench/results/data_path.json

``bench/run_data_bench.sh`` starts a private Glint and a private Glance, runs
this script against both and stops them again.  Needs curl and cat; standard
library only.  Every transfer has a timeout (``--timeout``) and every loop a
fixed count, so a run ends by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provenance import source_commit

MB = 1_000_000
MIB = 1 << 20
BATCH = 8 * MIB
RSS_SAMPLE_S = 0.05
QUIET_IDLE_PCT = 90.0
API_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDENTITY: dict[str, str] = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "bench",
    "X-User-Id": "bench",
    "X-Roles": "admin,member,reader",
}
# (label, numerator key, denominator key, comparison, target)
RATIO_TARGETS: tuple[tuple[str, str, str, str, float], ...] = (
    ("Glint upload / two-thread hash limit", "glint.upload", "limit.hash2", ">=", 0.45),
    ("Glint upload / Glance upload", "glint.upload", "glance.upload", ">=", 2.0),
    ("Glint download / Glance download", "glint.download", "glance.download", ">=", 1.25),
)
RSS_TARGET_MB = 200.0


def log(message: str) -> None:
    print(f"[data_path] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- model


@dataclass
class Series:
    """Repeated throughput measurements of one thing, MB/s (10^6 bytes/s)."""

    label: str
    nbytes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)

    def add(self, nbytes: int, seconds: float, **extra: Any) -> float:
        self.nbytes.append(nbytes)
        self.seconds.append(seconds)
        self.extra.append(extra)
        return self.mbs[-1]

    @property
    def mbs(self) -> list[float]:
        return [
            n / s / MB if s > 0 else 0.0 for n, s in zip(self.nbytes, self.seconds, strict=True)
        ]

    @property
    def median(self) -> float | None:
        return statistics.median(self.mbs) if self.nbytes else None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_mb_s": self.median,
            "runs_mb_s": self.mbs,
            "bytes": self.nbytes,
            "seconds": self.seconds,
            "runs": self.extra,
        }


@dataclass
class RssResult:
    """Memory of a server process tree sampled during one big upload."""

    upload_bytes: int = 0
    upload_seconds: float = 0.0
    http_code: str = ""
    samples: int = 0
    idle_rss_kib: int = 0
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_single_rss_kib: int = 0
    max_processes: int = 0
    # "pid name" -> that process's own peak VmRSS
    per_process_peak_kib: dict[str, int] = field(default_factory=dict)
    ok: bool = False
    note: str = ""

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib * 1024 / MB


@dataclass
class TargetResult:
    name: str
    url: str
    pid: int | None
    upload: Series
    upload_chunked: Series
    download: Series
    rss: RssResult | None = None
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------- /proc helpers


def _proc_stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (alive now)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    if _proc_stat_fields(root) is None:
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int | None) -> float:
    """User + system CPU seconds of the tree's live processes (plus their reaped children)."""
    if root is None:
        return 0.0
    total = 0
    for pid in process_tree(root):
        fields = _proc_stat_fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def cpu_idle_percent(interval: float = 1.0) -> float:
    """Share of all CPUs' time spent idle over the next `interval` seconds."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:9]]
        return values[3] + values[4], sum(values)

    idle0, total0 = snap()
    time.sleep(interval)
    idle1, total1 = snap()
    return 100.0 * (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(max_seconds: float, threshold: float = QUIET_IDLE_PCT) -> None:
    """Wait (at most `max_seconds`) until the machine is at least `threshold` % idle."""
    if max_seconds <= 0:
        return
    deadline = time.monotonic() + max_seconds
    while (idle := cpu_idle_percent()) < threshold:
        if time.monotonic() >= deadline:
            log(f"machine still busy ({idle:.0f} % idle) after {max_seconds:.0f} s; going on")
            return
        log(f"machine busy ({idle:.0f} % idle), waiting")
        time.sleep(2)


def client_cpu_seconds() -> float:
    """CPU of this process and its waited-for children (curl, cat)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class CpuSnapshot:
    wall: float
    busy: float
    server: float
    client: float

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSnapshot:
        return cls(
            time.monotonic(),
            machine_busy_seconds(),
            tree_cpu_seconds(server_pid),
            client_cpu_seconds(),
        )

    def until(self, later: CpuSnapshot) -> dict[str, float]:
        wall = later.wall - self.wall
        server = later.server - self.server
        client = later.client - self.client
        other = max(0.0, later.busy - self.busy - server - client)
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 2),
            "client_cpu_s": round(client, 2),
            "other_cpu_s": round(other, 2),
            "other_cpu_pct_of_core": round(100 * other / wall, 1) if wall > 0 else 0.0,
        }


def listening_pid(port: int) -> int | None:
    """The topmost process holding a listening TCP socket on `port` (the server's root)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    if not inodes:
        return None
    holders: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{entry}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        holders.add(int(entry))
                        break
    for pid in holders:
        fields = _proc_stat_fields(pid)
        if fields is not None and int(fields[1]) not in holders:
            return pid
    return min(holders) if holders else None


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
        return f.read().strip()
    return "?"


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples VmRSS and PSS of a process tree every RSS_SAMPLE_S until stopped."""

    def __init__(self, root: int, result: RssResult) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root = root
        self.result = result
        self.stopped = threading.Event()

    def sample(self) -> None:
        pids = process_tree(self.root)
        rss = [_status_kib(pid, "VmRSS:") for pid in pids]
        pss = sum(_pss_kib(pid) for pid in pids)
        r = self.result
        if r.samples == 0:
            r.idle_rss_kib = sum(rss)
        r.samples += 1
        r.peak_rss_kib = max(r.peak_rss_kib, sum(rss))
        r.peak_pss_kib = max(r.peak_pss_kib, pss)
        r.peak_single_rss_kib = max([r.peak_single_rss_kib, *rss])
        r.max_processes = max(r.max_processes, len(pids))
        for pid, kib in zip(pids, rss, strict=True):
            key = f"{pid} {_comm(pid)}"
            r.per_process_peak_kib[key] = max(r.per_process_peak_kib.get(key, 0), kib)

    def run(self) -> None:
        while not self.stopped.is_set():
            t0 = time.monotonic()
            self.sample()
            self.stopped.wait(max(0.0, RSS_SAMPLE_S - (time.monotonic() - t0)))


# --------------------------------------------------------------------- machine limits


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_random_file(path: Path, size: int) -> None:
    log(f"writing {size / MIB:.0f} MiB of random bytes to {path}")
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(BATCH, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def file_digests(path: Path) -> tuple[str, str]:
    md5, sha512 = hashlib.md5(), hashlib.sha512()
    buf = bytearray(BATCH)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            md5.update(view[:n])
            sha512.update(view[:n])
    return md5.hexdigest(), sha512.hexdigest()


def write_fsync_once(directory: Path, size: int, pattern: bytes) -> float:
    target = directory / f"fsync-{uuid.uuid4().hex}.tmp"
    try:
        os.sync()
        t0 = time.perf_counter()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = size
            view = memoryview(pattern)
            while left:
                n = min(len(pattern), left)
                written = os.write(fd, view[:n])
                left -= written
            os.fsync(fd)
        finally:
            os.close(fd)
        return time.perf_counter() - t0
    finally:
        target.unlink(missing_ok=True)


def read_once(path: Path) -> tuple[int, float]:
    buf = bytearray(BATCH)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total, time.perf_counter() - t0


def hash_one_thread(path: Path, algorithms: tuple[str, ...]) -> tuple[int, float, list[str]]:
    hashers = [hashlib.new(a) for a in algorithms]
    buf = bytearray(BATCH)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
            chunk = view[:n]
            for h in hashers:
                h.update(chunk)
    seconds = time.perf_counter() - t0
    return total, seconds, [h.hexdigest() for h in hashers]


def hash_two_threads(path: Path) -> tuple[int, float, list[str]]:
    """md5 in one thread, sha512 in another, both over the same 8 MiB batches that the
    calling thread reads into a small pool of buffers."""
    algorithms = ("md5", "sha512")
    pool: queue.Queue[bytearray] = queue.Queue()
    for _ in range(4):
        pool.put(bytearray(BATCH))
    inboxes: list[queue.Queue[tuple[bytearray, int] | None]] = [queue.Queue() for _ in algorithms]
    pending: dict[int, int] = {}
    lock = threading.Lock()
    digests: dict[str, str] = {}

    def worker(algorithm: str, inbox: queue.Queue[tuple[bytearray, int] | None]) -> None:
        h = hashlib.new(algorithm)
        while (item := inbox.get()) is not None:
            buf, n = item
            h.update(memoryview(buf)[:n])
            with lock:
                pending[id(buf)] -= 1
                if pending[id(buf)] == 0:
                    pool.put(buf)
        digests[algorithm] = h.hexdigest()

    total = 0
    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=worker, args=(a, q), daemon=True)
        for a, q in zip(algorithms, inboxes, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                buf = pool.get()
                n = f.readinto(buf)
                if not n:
                    break
                total += n
                with lock:
                    pending[id(buf)] = len(inboxes)
                for q in inboxes:
                    q.put((buf, n))
    finally:
        for q in inboxes:
            q.put(None)
        for t in threads:
            t.join()
    seconds = time.perf_counter() - t0
    return total, seconds, [digests[a] for a in algorithms]


def measure_limits(
    path: Path, work_dir: Path, args: argparse.Namespace, digests: tuple[str, str]
) -> dict[str, Series]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        pattern = f.read(BATCH)
    expected = {"md5": digests[0], "sha512": digests[1]}

    def read() -> tuple[int, float, list[str]]:
        return (*read_once(path), [])

    def hashed(*algorithms: str) -> Callable[[], tuple[int, float, list[str]]]:
        return lambda: hash_one_thread(path, algorithms)

    cases: list[tuple[str, str, Callable[[], tuple[int, float, list[str]]], bool]] = [
        (
            "write_fsync",
            "write + fsync (8 MiB writes, same file system)",
            lambda: (size, write_fsync_once(work_dir, size, pattern), []),
            False,
        ),
        ("read_warm", "read, page cache warm (8 MiB readinto)", read, False),
    ]
    if args.drop_caches:
        cases.append(("read_cold", "read, after drop_caches", read, True))
    cases += [
        ("md5", "hashlib md5, 1 thread", hashed("md5"), False),
        ("sha512", "hashlib sha512, 1 thread", hashed("sha512"), False),
        ("hash1", "hashlib md5 + sha512, one pass, 1 thread", hashed("md5", "sha512"), False),
        (
            "hash2",
            "hashlib md5 + sha512, 2 threads (same batches)",
            lambda: hash_two_threads(path),
            False,
        ),
    ]
    limits: dict[str, Series] = {}
    for key, label, run, cold in cases:
        s = limits[key] = Series(label)
        if not cold:
            read_once(path)  # page cache warm
        for i in range(args.runs):
            wait_quiet(args.wait_quiet)
            if cold:
                drop_caches()
            before = CpuSnapshot.take(None)
            nbytes, seconds, got = run()
            cpu = before.until(CpuSnapshot.take(None))
            names = ("md5", "sha512") if key in ("hash1", "hash2") else (key,)
            if got and [expected[a] for a in names] != got:
                raise RuntimeError(f"{label}: digest differs from the file's")
            mbs = s.add(nbytes, seconds, **cpu)
            log(
                f"limit {key} run {i + 1}: {mbs:.0f} MB/s "
                f"(other {cpu['other_cpu_pct_of_core']} % of a core)"
            )
    return limits


# --------------------------------------------------------------------- HTTP / curl


class ApiError(RuntimeError):
    pass


def api(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = dict(IDENTITY)
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{method} {url} -> {exc.code}: {exc.read()[:300]!r}") from None
    except OSError as exc:
        raise ApiError(f"{method} {url} -> {exc}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def create_image(base: str, name: str) -> str:
    _, doc = api(
        "POST",
        f"{base}/v2/images",
        {"name": name, "disk_format": "raw", "container_format": "bare"},
    )
    return str(doc["id"])


def delete_image(base: str, image_id: str) -> None:
    with contextlib.suppress(ApiError):
        api("DELETE", f"{base}/v2/images/{image_id}")


def _curl_identity() -> list[str]:
    args: list[str] = []
    for key, value in IDENTITY.items():
        args += ["-H", f"{key}: {value}"]
    return args


def curl_upload(
    url: str, source: Path | None, chunked: bool, timeout: float, stdin: Any = None
) -> tuple[str, float, int, str]:
    """PUT with curl; `source` None means stdin (curl then sends chunked).
    Returns (http code, seconds, bytes sent, stderr)."""
    cmd = [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_upload}",
        "--max-time", str(int(timeout)), *_curl_identity(),
        "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
    ]  # fmt: skip
    if chunked:
        cmd += ["-H", "Transfer-Encoding: chunked"]
    cmd += ["-X", "PUT", "-T", str(source) if source is not None else "-", url]
    proc = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, timeout=timeout + 30)
    return _curl_result(proc)


def curl_download(url: str, timeout: float) -> tuple[str, float, int, str]:
    cmd = [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}",
        "--max-time", str(int(timeout)), *_curl_identity(), url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    return _curl_result(proc)


def _curl_result(proc: subprocess.CompletedProcess[str]) -> tuple[str, float, int, str]:
    parts = proc.stdout.split()
    if len(parts) != 3:
        return "000", 0.0, 0, proc.stderr.strip() or f"curl exit {proc.returncode}"
    code, seconds, nbytes = parts
    return code, float(seconds), int(float(nbytes)), proc.stderr.strip()


def verify_image(base: str, image_id: str, size: int, md5: str, sha512: str) -> list[str]:
    _, doc = api("GET", f"{base}/v2/images/{image_id}")
    problems = []
    wanted = {
        "status": "active",
        "size": size,
        "checksum": md5,
        "os_hash_algo": "sha512",
        "os_hash_value": sha512,
    }
    for key, value in wanted.items():
        if doc.get(key) != value:
            problems.append(f"{key}={doc.get(key)!r} (expected {value!r})")
    return problems


# --------------------------------------------------------------------- targets


def round_robin(targets: list[TargetResult], run: int) -> Iterator[TargetResult]:
    """The targets in turn, the first one alternating from run to run."""
    shift = run % len(targets)
    yield from targets[shift:] + targets[:shift]


def run_transfer(
    t: TargetResult,
    path: Path,
    digests: tuple[str, str],
    *,
    chunked: bool,
    download: bool,
    run: int,
    args: argparse.Namespace,
) -> None:
    size = path.stat().st_size
    mode = "chunked" if chunked else "content-length"
    try:
        image_id = create_image(t.url, f"bench-data-{mode}-{run + 1}")
    except ApiError as exc:
        t.errors.append(f"create: {exc}")
        log(f"{t.name}: {exc}")
        return
    try:
        wait_quiet(args.wait_quiet)
        if args.drop_caches:
            drop_caches()
        before = CpuSnapshot.take(t.pid)
        code, seconds, sent, err = curl_upload(
            f"{t.url}/v2/images/{image_id}/file", path, chunked, args.timeout
        )
        cpu = before.until(CpuSnapshot.take(t.pid))
        series = t.upload_chunked if chunked else t.upload
        if code != "204" or sent < size:
            t.errors.append(f"upload {mode} run {run + 1}: http {code}, {sent} bytes sent {err}")
            log(f"{t.name}: upload {mode} run {run + 1} FAILED: http {code} {err}")
            return
        problems = verify_image(t.url, image_id, size, *digests)
        mbs = series.add(size, seconds, http=code, verified=not problems, **cpu)
        log(
            f"{t.name}: upload {mode} run {run + 1}: {mbs:.0f} MB/s "
            f"(server cpu {cpu['server_cpu_s']} s, "
            f"other {cpu['other_cpu_pct_of_core']} % of a core)"
            + (f" VERIFY FAILED: {'; '.join(problems)}" if problems else ", checksums ok")
        )
        if problems:
            t.errors.append(f"upload {mode} run {run + 1}: {'; '.join(problems)}")
        if download:
            before = CpuSnapshot.take(t.pid)
            code, seconds, got, err = curl_download(
                f"{t.url}/v2/images/{image_id}/file", args.timeout
            )
            cpu = before.until(CpuSnapshot.take(t.pid))
            if code != "200" or got != size:
                t.errors.append(f"download run {run + 1}: http {code}, {got} bytes {err}")
                log(f"{t.name}: download run {run + 1} FAILED: http {code}, {got} bytes {err}")
            else:
                mbs = t.download.add(size, seconds, http=code, **cpu)
                log(f"{t.name}: download run {run + 1}: {mbs:.0f} MB/s")
    except (ApiError, subprocess.TimeoutExpired) as exc:
        t.errors.append(f"{mode} run {run + 1}: {exc}")
        log(f"{t.name}: {exc}")
    finally:
        delete_image(t.url, image_id)


def run_rss(t: TargetResult, path: Path, copies: int, args: argparse.Namespace) -> RssResult:
    result = RssResult()
    if t.pid is None:
        result.note = "server process not found"
        return result
    size = path.stat().st_size * copies
    try:
        image_id = create_image(t.url, "bench-data-rss")
    except ApiError as exc:
        result.note = str(exc)
        return result
    try:
        wait_quiet(args.wait_quiet)
        if args.drop_caches:
            drop_caches()
        sampler = RssSampler(t.pid, result)
        sampler.start()
        time.sleep(0.5)
        feeder = subprocess.Popen(["cat", *[str(path)] * copies], stdout=subprocess.PIPE)
        try:
            code, seconds, sent, err = curl_upload(
                f"{t.url}/v2/images/{image_id}/file",
                None,
                chunked=True,
                timeout=args.timeout * copies,
                stdin=feeder.stdout,
            )
        finally:
            if feeder.stdout is not None:
                feeder.stdout.close()
            try:
                feeder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                feeder.kill()
                feeder.wait()
            time.sleep(0.5)
            sampler.stopped.set()
            sampler.join(timeout=10)
        # curl's size_upload counts the chunk framing too: compare with >=, and check the
        # image's size below
        result.http_code, result.upload_seconds, result.upload_bytes = code, seconds, size
        if code != "204" or sent < size:
            result.note = f"upload: http {code}, {sent} of {size} bytes sent {err}".strip()
        else:
            _, doc = api("GET", f"{t.url}/v2/images/{image_id}")
            if doc.get("status") != "active" or doc.get("size") != size:
                result.note = (
                    f"image after upload: status {doc.get('status')}, size {doc.get('size')}"
                )
            else:
                result.ok = True
    except (ApiError, subprocess.TimeoutExpired) as exc:
        result.note = str(exc)
    finally:
        delete_image(t.url, image_id)
    log(
        f"{t.name}: {size / MIB:.0f} MiB chunked upload, peak tree RSS {result.peak_rss_mb:.1f} MB "
        f"(idle {result.idle_rss_kib * 1024 / MB:.1f} MB, {result.samples} samples)"
        + ("" if result.ok else f" FAILED: {result.note}")
    )
    return result


# --------------------------------------------------------------------- report


def median_extra(series: Series, key: str) -> float | None:
    xs = [float(e[key]) for e in series.extra if key in e]
    return statistics.median(xs) if xs else None


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def runs_text(series: Series) -> str:
    return ", ".join(f"{v:,.0f}" for v in series.mbs) or "-"


def report(
    limits: dict[str, Series],
    targets: list[TargetResult],
    size: int,
    args: argparse.Namespace,
    copies: int,
    commit: str | None = None,
) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    cache = "dropped before every upload" if args.drop_caches else "not dropped"
    lines += [
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at the end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "",
        f"## Machine limits ({size / MIB:.0f} MiB, {args.runs} runs, median; MB = 10^6 bytes)",
        "",
    ]
    if limits:
        lines += [
            "| measurement | median MB/s | runs MB/s | other processes, % of a core (median) |",
            "| --- | ---: | --- | ---: |",
        ]
        for s in limits.values():
            other = fmt(median_extra(s, "other_cpu_pct_of_core"), 1)
            lines.append(f"| {s.label} | {fmt(s.median)} | {runs_text(s)} | {other} |")
        if "read_cold" not in limits:
            lines.append("| read, after drop_caches | not measured (no --drop-caches) | | |")
    else:
        lines.append("Not measured (--skip-limits).")

    names = [t.name for t in targets]
    ratio_head = [f"{names[0]}/{names[1]}"] if len(names) == 2 else []
    lines += [
        "",
        f"## Data path ({size / MIB:.0f} MiB of random bytes, {args.runs} runs each, median MB/s; "
        f"page cache {cache})",
        "",
        "| measurement | " + " | ".join([*names, *ratio_head]) + " |",
        "| --- | " + " | ".join("---:" for _ in [*names, *ratio_head]) + " |",
    ]

    def row(label: str, values: list[float | None], digits: int = 0, ratio: bool = True) -> None:
        cells = [fmt(v, digits) for v in values]
        if len(values) == 2:
            a, b = values
            cells.append(f"{a / b:.2f}" if ratio and a is not None and b else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("upload, Content-Length (curl -T file)", [t.upload.median for t in targets])
    row("upload, chunked", [t.upload_chunked.median for t in targets])
    row("download (curl > /dev/null)", [t.download.median for t in targets])
    row(
        "server CPU s per upload (Content-Length, median)",
        [median_extra(t.upload, "server_cpu_s") for t in targets],
        2,
    )
    row(
        "other processes during uploads, % of a core (median)",
        [median_extra(t.upload, "other_cpu_pct_of_core") for t in targets],
        1,
        ratio=False,
    )
    row(
        "server CPU s per download (median)",
        [median_extra(t.download, "server_cpu_s") for t in targets],
        2,
    )
    row(
        "other processes during downloads, % of a core (median)",
        [median_extra(t.download, "other_cpu_pct_of_core") for t in targets],
        1,
        ratio=False,
    )
    rss_label = f"{copies * size / MIB:.0f} MiB chunked upload (stdin pipe)"
    row(
        f"{rss_label}: MB/s",
        [
            t.rss.upload_bytes / t.rss.upload_seconds / MB if t.rss and t.rss.ok else None
            for t in targets
        ],
    )
    row(
        f"{rss_label}: peak RSS of server tree, MB",
        [t.rss.peak_rss_mb if t.rss and t.rss.samples else None for t in targets],
        1,
    )
    row(
        "  same, RSS before the upload, MB",
        [t.rss.idle_rss_kib * 1024 / MB if t.rss and t.rss.samples else None for t in targets],
        1,
    )
    row(
        "  same, peak PSS of server tree, MB",
        [t.rss.peak_pss_kib * 1024 / MB if t.rss and t.rss.samples else None for t in targets],
        1,
    )
    row(
        "  same, peak minus before, MB",
        [
            (t.rss.peak_rss_kib - t.rss.idle_rss_kib) * 1024 / MB
            if t.rss and t.rss.samples
            else None
            for t in targets
        ],
        1,
        ratio=False,
    )
    row(
        "  same, peak RSS of one process, MB",
        [
            t.rss.peak_single_rss_kib * 1024 / MB if t.rss and t.rss.samples else None
            for t in targets
        ],
        1,
    )
    lines += [
        "",
        "Downloads follow each Content-Length upload (the image was just written). Server CPU:",
        "user + system seconds of the server's process tree during the transfer.",
        "",
    ]
    for t in targets:
        lines.append(
            f"- {t.name}: upload runs {runs_text(t.upload)}; chunked runs "
            f"{runs_text(t.upload_chunked)}; download runs {runs_text(t.download)} MB/s; "
            f"server pid {t.pid if t.pid is not None else 'unknown'}"
            + (
                "; peak RSS per process (pid name: MB) "
                + ", ".join(
                    f"{k}: {v * 1024 / MB:.1f}" for k, v in t.rss.per_process_peak_kib.items()
                )
                if t.rss and t.rss.samples
                else ""
            )
        )

    values: dict[str, float | None] = {
        "limit.hash2": limits["hash2"].median if "hash2" in limits else None
    }
    for t in targets:
        values[f"{t.name}.upload"] = t.upload.median
        values[f"{t.name}.download"] = t.download.median
    ratios: list[dict[str, Any]] = []
    lines += [
        "",
        "## Ratios",
        "",
        "| ratio | value | target | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, num, den, op, target in RATIO_TARGETS:
        a, b = values.get(num), values.get(den)
        value = a / b if a is not None and b else None
        met = None if value is None else value >= target
        ratios.append({"ratio": label, "value": value, "target": f"{op} {target}", "met": met})
        yes_no = "n/a" if met is None else ("yes" if met else "NO")
        lines.append(f"| {label} | {fmt(value, 2)} | {op} {target} | {yes_no} |")
    glint = next((t for t in targets if t.name == "glint"), None)
    peak = glint.rss.peak_rss_mb if glint and glint.rss and glint.rss.samples else None
    met_rss = None if peak is None else peak < RSS_TARGET_MB
    ratios.append(
        {
            "ratio": "Glint peak RSS, MB",
            "value": peak,
            "target": f"< {RSS_TARGET_MB}",
            "met": met_rss,
        }
    )
    lines.append(
        f"| Glint peak RSS ({copies * size / MIB:.0f} MiB upload), MB | {fmt(peak, 1)} | "
        f"< {RSS_TARGET_MB:.0f} | {'n/a' if met_rss is None else ('yes' if met_rss else 'NO')} |"
    )

    errors = [f"{t.name}: {e}" for t in targets for e in t.errors]
    errors += [f"{t.name}: rss upload: {t.rss.note}" for t in targets if t.rss and not t.rss.ok]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in errors]

    doc: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_end": os.getloadavg(),
        },
        "settings": {
            "size_bytes": size,
            "runs": args.runs,
            "drop_caches": args.drop_caches,
            "rss_upload_bytes": copies * size,
            "rss_sample_interval_s": RSS_SAMPLE_S,
            "mb": MB,
        },
        "limits": {k: s.to_json() for k, s in limits.items()},
        "targets": {
            t.name: {
                "url": t.url,
                "pid": t.pid,
                "upload": t.upload.to_json(),
                "upload_chunked": t.upload_chunked.to_json(),
                "download": t.download.to_json(),
                "rss": (asdict(t.rss) | {"peak_rss_mb": t.rss.peak_rss_mb}) if t.rss else None,
                "errors": t.errors,
            }
            for t in targets
        },
        "ratios": ratios,
        "errors": errors,
    }
    return "\n".join(lines), doc


# --------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--glint", metavar="URL", help="Glint endpoint, e.g. http://127.0.0.1:9396")
    p.add_argument("--glance", metavar="URL", help="Glance endpoint (the reference)")
    p.add_argument(
        "--glint-pid", type=int, help="Glint server root pid (default: found from the port)"
    )
    p.add_argument(
        "--glance-pid", type=int, help="Glance server root pid (default: found from the port)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("."),
        help="directory for the random file and the fsync test; put it on the servers' disk",
    )
    p.add_argument("--file", type=Path, help="use this file instead of writing a random one (kept)")
    p.add_argument("--keep-file", action="store_true", help="keep the random file written")
    p.add_argument("--size-mib", type=int, default=1024, help="size of the random file (1024)")
    p.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (3)")
    p.add_argument(
        "--rss-mib",
        type=int,
        default=4096,
        help="size of the upload during which memory is sampled, a multiple of --size-mib "
        "(4096; 0 skips)",
    )
    p.add_argument(
        "--drop-caches",
        action="store_true",
        help="sync + echo 3 > /proc/sys/vm/drop_caches before each upload and the cold read (root)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before each measurement wait up to SECONDS for >= {QUIET_IDLE_PCT:.0f} %% idle CPU "
        "(the machine may be shared; default 0: do not wait)",
    )
    p.add_argument("--skip-limits", action="store_true", help="do not measure the machine limits")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per 1 GiB transfer (300)")
    p.add_argument("--json", type=Path, help="write all results to this file")
    args = p.parse_args(argv)
    if not (args.glint or args.glance or not args.skip_limits):
        p.error("nothing to do: give --glint and/or --glance, or drop --skip-limits")
    if args.runs < 1 or args.size_mib < 1 or args.rss_mib < 0:
        p.error("--runs and --size-mib must be >= 1, --rss-mib >= 0")
    if args.rss_mib % args.size_mib:
        p.error("--rss-mib must be a multiple of --size-mib")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commit = source_commit()
    for tool in ("curl", "cat"):
        if shutil.which(tool) is None:
            log(f"{tool} not found")
            return 2
    if args.drop_caches:
        try:
            drop_caches()
        except OSError as exc:
            log(f"--drop-caches: cannot drop the page cache ({exc}); run as root or without it")
            return 2

    targets: list[TargetResult] = []
    for name, url, pid in (
        ("glint", args.glint, args.glint_pid),
        ("glance", args.glance, args.glance_pid),
    ):
        if not url:
            continue
        url = url.rstrip("/")
        if pid is None:
            port = urllib.parse.urlsplit(url).port or 80
            pid = listening_pid(port)
        try:
            api("GET", f"{url}/v2/images?limit=1")
        except ApiError as exc:
            log(f"{name}: endpoint not usable: {exc}")
            return 2
        log(f"{name}: {url}, server pid {pid}")
        targets.append(
            TargetResult(
                name,
                url,
                pid,
                Series(f"{name} upload, Content-Length"),
                Series(f"{name} upload, chunked"),
                Series(f"{name} download"),
            )
        )

    work_dir: Path = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    owned = args.file is None
    path = args.file.resolve() if args.file else work_dir / f"data-path-{uuid.uuid4().hex[:8]}.bin"
    try:
        if owned:
            make_random_file(path, args.size_mib * MIB)
        size = path.stat().st_size
        digests = file_digests(path)
        log(f"file {size} bytes, md5 {digests[0]}")

        limits: dict[str, Series] = {}
        if not args.skip_limits:
            limits = measure_limits(path, work_dir, args, digests)

        if targets:
            for chunked, download in ((False, True), (True, False)):
                for run in range(args.runs):
                    for t in round_robin(targets, run):
                        run_transfer(
                            t, path, digests, chunked=chunked, download=download, run=run, args=args
                        )
            copies = max(1, round(args.rss_mib * MIB / size)) if args.rss_mib else 0
            if copies:
                for t in targets:
                    t.rss = run_rss(t, path, copies, args)
        else:
            copies = 0
    finally:
        if owned and not args.keep_file:
            path.unlink(missing_ok=True)

    text, doc = report(limits, targets, size, args, copies, commit)
    print(text, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
