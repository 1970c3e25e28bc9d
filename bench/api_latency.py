"""Metadata-API latency benchmark for Images-v2 (Glance v2) endpoints.

Run on demand, never in CI.  For every target it

1. loads ``--images`` images (default 10,000) with ``POST /v2/images`` using
   ``--load-clients`` concurrent clients (default 8); loading is skipped (or
   topped up) when the project already owns images from an earlier run with
   the same ``--project``;
2. at each concurrency of ``--concurrency`` (default ``1,16``) runs three
   phases of ``--requests`` requests each (default 300), recording the
   client-side wall time of every request (response body read):

   * ``list``   ``GET /v2/images?limit=100``: half first pages, half pages after
     a ``marker`` picked at random among the loaded image ids;
   * ``show``   ``GET /v2/images/{id}`` of a random loaded id;
   * ``create`` ``POST /v2/images`` of a new image;

3. prints median / p95 (nearest rank) per phase, the errors (non-2xx or
   exceptions, counted apart from the latencies), and with two or more targets
   the ratios first/second target and the project's goals (list p95 <= 1/3 of
   the reference's, show and create p95 <= 1/2, zero errors at 16 clients),
   the reference being the second target.

Every loop has a fixed count and every request a timeout (``--timeout``), so a
run always ends by itself.

Identity is passed the keystone-less way (``X-Identity-Status: Confirmed``,
``X-Project-Id``, ``X-User-Id``, ``X-Roles``), which both Glint and the Glance
started by ``bench/glance/`` ("headers" paste flavor) accept.

Examples::

    python bench/api_latency.py --target glance=http://127.0.0.1:9494 --images 1000
    python bench/api_latency.py \\
        --target glint=http://127.0.0.1:9393 --target glance=http://127.0.0.1:9494 \\
        --json bench/results/api_latency.json

``bench/run_api_bench.sh`` starts a private Glint and a private Glance, runs
this script against both and stops them again.

The client runs in one Python process (asyncio + httpx, one ``AsyncClient``
per simulated user); on a small machine it competes with the server for CPU,
so the client CPU time of each phase is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import platform
import random
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from provenance import source_commit

OPERATIONS: tuple[str, ...] = ("list", "show", "create")
LIST_PAGE_SIZE = 100
LOAD_PROGRESS_EVERY = 1000
MAX_ERROR_SAMPLES = 5
LOAD_ATTEMPTS = 6  # per image while loading; the measured phases never retry
LOAD_RETRY_DELAY_S = 0.05
# Goal: candidate p95 <= factor x reference p95.
P95_GOALS: dict[str, float] = {"list": 1 / 3, "show": 1 / 2, "create": 1 / 2}
ZERO_ERROR_CONCURRENCY = 16


# --------------------------------------------------------------------- model


@dataclass(frozen=True)
class Target:
    label: str
    url: str


@dataclass
class RequestOutcome:
    ok: bool
    seconds: float
    error: str | None = None
    created_id: str | None = None


@dataclass
class PhaseResult:
    operation: str
    concurrency: int
    requests: int
    ok: int
    errors: int
    error_samples: list[str]
    median_ms: float | None
    p95_ms: float | None
    min_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    wall_s: float
    throughput_rps: float
    client_cpu_s: float


@dataclass
class LoadResult:
    wanted: int
    found_existing: int
    created: int
    errors: int  # images still not created after LOAD_ATTEMPTS tries
    error_samples: list[str]
    failed_attempts: int  # every failed POST while loading, retried or not
    failed_attempt_samples: list[str]
    wall_s: float
    rate_per_s: float | None


@dataclass
class TargetResult:
    label: str
    url: str
    project: str
    load: LoadResult
    phases: list[PhaseResult] = field(default_factory=list)

    def phase(self, operation: str, concurrency: int) -> PhaseResult | None:
        for result in self.phases:
            if result.operation == operation and result.concurrency == concurrency:
                return result
        return None


@dataclass
class Settings:
    targets: list[Target]
    images: int
    load_clients: int
    concurrencies: list[int]
    requests: int
    warmup: int
    timeout: float
    project: str
    seed: int
    json_path: str | None


# --------------------------------------------------------------------- stats


def nearest_rank(sorted_values: list[float], percentile: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(percentile / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(
    operation: str,
    concurrency: int,
    outcomes: list[RequestOutcome],
    wall_s: float,
    client_cpu_s: float,
) -> PhaseResult:
    latencies_ms = sorted(o.seconds * 1000 for o in outcomes if o.ok)
    failures = [o.error or "unknown error" for o in outcomes if not o.ok]
    samples = [f"{count}x {text}" for text, count in Counter(failures).most_common()]
    has_data = bool(latencies_ms)
    return PhaseResult(
        operation=operation,
        concurrency=concurrency,
        requests=len(outcomes),
        ok=len(latencies_ms),
        errors=len(failures),
        error_samples=samples[:MAX_ERROR_SAMPLES],
        median_ms=statistics.median(latencies_ms) if has_data else None,
        p95_ms=nearest_rank(latencies_ms, 95) if has_data else None,
        min_ms=latencies_ms[0] if has_data else None,
        max_ms=latencies_ms[-1] if has_data else None,
        mean_ms=statistics.fmean(latencies_ms) if has_data else None,
        wall_s=wall_s,
        throughput_rps=len(outcomes) / wall_s if wall_s > 0 else 0.0,
        client_cpu_s=client_cpu_s,
    )


# --------------------------------------------------------------------- HTTP


def identity_headers(project: str) -> dict[str, str]:
    return {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": project,
        "X-User-Id": "bench",
        "X-Roles": "admin,member,reader",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def new_client(target: Target, project: str, timeout: float) -> httpx.AsyncClient:
    """One client = one simulated user with a single (keep-alive) connection."""
    return httpx.AsyncClient(
        base_url=target.url,
        headers=identity_headers(project),
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        trust_env=False,
    )


def image_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "private",
        "tags": ["bench"],
        "os_distro": "x",
    }


UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def describe_failure(response: httpx.Response) -> str:
    """Short, id-free error text, so that identical errors are counted together."""
    text = UUID_PATTERN.sub("<id>", " ".join(response.text.split()))[:120]
    return f"HTTP {response.status_code} {response.request.method} {text}"


async def timed_request(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    params: dict[str, str | int] | None = None,
    body: dict[str, Any] | None = None,
) -> RequestOutcome:
    """Send one request; the measured time includes reading the whole body."""
    start = time.perf_counter()
    try:
        response = await client.request(method, path, params=params, json=body)
        await response.aread()
    except (httpx.HTTPError, OSError) as exc:
        elapsed = time.perf_counter() - start
        return RequestOutcome(False, elapsed, f"{type(exc).__name__}: {exc}"[:160])
    elapsed = time.perf_counter() - start
    if not 200 <= response.status_code < 300:
        return RequestOutcome(False, elapsed, describe_failure(response))
    created_id: str | None = None
    if method == "POST":
        try:
            created_id = str(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            return RequestOutcome(False, elapsed, "create answered without an image id")
    return RequestOutcome(True, elapsed, created_id=created_id)


async def check_reachable(target: Target, request_timeout: float) -> None:
    async with httpx.AsyncClient(
        base_url=target.url, timeout=request_timeout, trust_env=False
    ) as client:
        response = await client.get("/healthcheck")
    if response.status_code != 200:
        raise RuntimeError(f"{target.label}: GET /healthcheck -> {response.status_code}")


async def existing_image_ids(target: Target, settings: Settings) -> list[str]:
    """Ids of the images the bench project already owns (follows ``next``)."""
    ids: list[str] = []
    path: str | None = "/v2/images"
    params: dict[str, str | int] | None = {"limit": 1000, "owner": settings.project}
    # Bounded: at most enough pages for the wanted images plus a spare one.
    max_pages = settings.images // 1000 + 2
    async with new_client(target, settings.project, settings.timeout) as client:
        for _ in range(max_pages):
            if path is None or len(ids) >= settings.images:
                break
            response = await client.get(path, params=params)
            response.raise_for_status()
            document = response.json()
            ids.extend(
                str(image["id"])
                for image in document.get("images", [])
                if image.get("owner") == settings.project
            )
            next_link = document.get("next")
            path, params = (str(next_link), None) if next_link else (None, None)
    return ids


# --------------------------------------------------------------------- phases


async def run_workers(
    clients: list[httpx.AsyncClient],
    count: int,
    make_request: Callable[[httpx.AsyncClient, int], Awaitable[RequestOutcome]],
    on_done: Callable[[int], None] | None = None,
) -> list[RequestOutcome]:
    """Run ``count`` requests spread over ``clients``, one request in flight each."""
    outcomes: list[RequestOutcome | None] = [None] * count
    counter = iter(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        for index in counter:
            outcomes[index] = await make_request(client, index)
            if on_done is not None:
                on_done(index)

    await asyncio.gather(*(worker(client) for client in clients[:count]))
    return [o for o in outcomes if o is not None]


async def warm_up(
    clients: list[httpx.AsyncClient],
    per_client: int,
    make_request: Callable[[httpx.AsyncClient, int], Awaitable[RequestOutcome]],
) -> None:
    """Unmeasured requests on every client (connection set-up, first-use costs)."""

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        for index in range(offset, offset + per_client):
            await make_request(client, index)

    await asyncio.gather(*(worker(c, n * per_client) for n, c in enumerate(clients)))


async def create_with_retries(
    client: httpx.AsyncClient, name: str, failed_attempts: Counter[str]
) -> RequestOutcome:
    """Loading only: create one image, retrying on 5xx / transport errors.

    Glance on SQLite answers 500 ("database is locked") to some concurrent
    creates, sometimes after the image row was written.  The image id is chosen
    here, so a retry that gets 409 means an earlier attempt did create it.
    """
    image_id = str(uuid.uuid4())
    body = {**image_body(name), "id": image_id}
    outcome = RequestOutcome(False, 0.0, "not attempted")
    for attempt in range(LOAD_ATTEMPTS):
        if attempt:
            await asyncio.sleep(LOAD_RETRY_DELAY_S * 2 ** (attempt - 1) * (1 + random.random()))
        outcome = await timed_request(client, "POST", "/v2/images", body=body)
        if outcome.ok:
            return outcome
        failed_attempts[outcome.error or "unknown error"] += 1
        if attempt and outcome.error and outcome.error.startswith("HTTP 409 "):
            return RequestOutcome(True, outcome.seconds, created_id=image_id)
        retryable = outcome.error is None or not outcome.error.startswith("HTTP 4")
        if not retryable:
            break
    return outcome


async def load_images(target: Target, settings: Settings) -> tuple[list[str], LoadResult]:
    existing = await existing_image_ids(target, settings)
    missing = max(0, settings.images - len(existing))
    log(
        f"[{target.label}] project {settings.project}: {len(existing)} images already, "
        f"creating {missing} with {settings.load_clients} clients"
    )
    start = time.perf_counter()
    done = 0
    failed_attempts: Counter[str] = Counter()

    def progress(_: int) -> None:
        nonlocal done
        done += 1
        if done % LOAD_PROGRESS_EVERY == 0 or done == missing:
            elapsed = time.perf_counter() - start
            log(f"[{target.label}]   loaded {done}/{missing} ({done / elapsed:.0f}/s)")

    async def create(client: httpx.AsyncClient, index: int) -> RequestOutcome:
        return await create_with_retries(client, f"bench-{len(existing) + index}", failed_attempts)

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(new_client(target, settings.project, settings.timeout))
            for _ in range(settings.load_clients)
        ]
        outcomes = await run_workers(clients, missing, create, progress)
    wall = time.perf_counter() - start
    created = [o.created_id for o in outcomes if o.ok and o.created_id]
    failures = [o.error or "unknown error" for o in outcomes if not o.ok]
    samples = [f"{n}x {text}" for text, n in Counter(failures).most_common(MAX_ERROR_SAMPLES)]
    result = LoadResult(
        wanted=settings.images,
        found_existing=len(existing),
        created=len(created),
        errors=len(failures),
        error_samples=samples,
        failed_attempts=sum(failed_attempts.values()),
        failed_attempt_samples=[
            f"{n}x {text}" for text, n in failed_attempts.most_common(MAX_ERROR_SAMPLES)
        ],
        wall_s=round(wall, 3),
        rate_per_s=round(len(created) / wall, 1) if created and wall > 0 else None,
    )
    return existing + created, result


def request_factory(
    operation: str,
    count: int,
    image_ids: list[str],
    rng: random.Random,
    name_prefix: str,
) -> Callable[[httpx.AsyncClient, int], Awaitable[RequestOutcome]]:
    """Build the request function of one phase; random choices are drawn up front."""
    if operation == "list":
        markers: list[str | None] = [
            rng.choice(image_ids) if rng.random() < 0.5 else None for _ in range(count)
        ]

        def list_page(client: httpx.AsyncClient, index: int) -> Awaitable[RequestOutcome]:
            params: dict[str, str | int] = {"limit": LIST_PAGE_SIZE}
            marker = markers[index]
            if marker is not None:
                params["marker"] = marker
            return timed_request(client, "GET", "/v2/images", params=params)

        return list_page
    if operation == "show":
        picks = [rng.choice(image_ids) for _ in range(count)]

        def show(client: httpx.AsyncClient, index: int) -> Awaitable[RequestOutcome]:
            return timed_request(client, "GET", f"/v2/images/{picks[index]}")

        return show
    if operation == "create":

        def create(client: httpx.AsyncClient, index: int) -> Awaitable[RequestOutcome]:
            body = image_body(f"{name_prefix}-{index}")
            return timed_request(client, "POST", "/v2/images", body=body)

        return create
    raise ValueError(f"unknown operation {operation!r}")


async def run_phase(
    clients: list[httpx.AsyncClient],
    settings: Settings,
    operation: str,
    concurrency: int,
    image_ids: list[str],
    rng: random.Random,
) -> PhaseResult:
    tag = f"c{concurrency}-{operation}"
    users = clients[:concurrency]
    if settings.warmup:
        warm_count = settings.warmup * len(users)
        warm = request_factory(operation, warm_count, image_ids, rng, f"bench-warm-{tag}")
        await warm_up(users, settings.warmup, warm)
    make_request = request_factory(operation, settings.requests, image_ids, rng, f"bench-{tag}")
    cpu_start = time.process_time()
    start = time.perf_counter()
    outcomes = await run_workers(users, settings.requests, make_request)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return summarise(operation, concurrency, outcomes, wall, cpu)


async def bench_target(target: Target, settings: Settings) -> TargetResult:
    await check_reachable(target, settings.timeout)
    image_ids, load = await load_images(target, settings)
    result = TargetResult(target.label, target.url, settings.project, load)
    if not image_ids:
        log(f"[{target.label}] no images available; skipping the latency phases")
        return result
    rng = random.Random(f"{settings.seed}-{target.label}")
    async with contextlib.AsyncExitStack() as stack:
        # One client (one connection) per simulated user, reused across phases.
        clients = [
            await stack.enter_async_context(new_client(target, settings.project, settings.timeout))
            for _ in range(max(settings.concurrencies))
        ]
        for concurrency in settings.concurrencies:
            for operation in OPERATIONS:
                phase = await run_phase(clients, settings, operation, concurrency, image_ids, rng)
                log(
                    f"[{target.label}]   {operation:<6} c={concurrency:<3} "
                    f"median {fmt_ms(phase.median_ms)} p95 {fmt_ms(phase.p95_ms)} "
                    f"errors {phase.errors}"
                )
                result.phases.append(phase)
    return result


# --------------------------------------------------------------------- report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def render_target(result: TargetResult) -> str:
    load = result.load
    lines = [
        f"== {result.label}  {result.url}  (project {result.project})",
        f"   images: {load.found_existing} existing + {load.created} created "
        f"(failed attempts {load.failed_attempts}, given up {load.errors}, {load.wall_s:.1f} s"
        + (f", {load.rate_per_s:.0f}/s)" if load.rate_per_s else ")"),
    ]
    lines.extend(f"   load attempt failed: {s}" for s in load.failed_attempt_samples)
    header = (
        f"   {'phase':<8}{'clients':>8}{'ok':>6}{'errors':>8}{'median ms':>11}"
        f"{'p95 ms':>9}{'max ms':>9}{'req/s':>8}{'cli cpu s':>11}"
    )
    lines.append(header)
    for p in result.phases:
        lines.append(
            f"   {p.operation:<8}{p.concurrency:>8}{p.ok:>6}{p.errors:>8}"
            f"{fmt_num(p.median_ms):>11}{fmt_num(p.p95_ms):>9}{fmt_num(p.max_ms):>9}"
            f"{p.throughput_rps:>8.1f}{p.client_cpu_s:>11.2f}"
        )
        lines.extend(f"      error: {sample}" for sample in p.error_samples)
    return "\n".join(lines)


def compare(
    candidate: TargetResult, reference: TargetResult, concurrencies: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ratios candidate/reference per phase, and the goal checks."""
    ratios: list[dict[str, Any]] = []
    goals: list[dict[str, Any]] = []
    for concurrency in concurrencies:
        for operation in OPERATIONS:
            mine = candidate.phase(operation, concurrency)
            theirs = reference.phase(operation, concurrency)
            if mine is None or theirs is None:
                continue
            p95_ratio = ratio(mine.p95_ms, theirs.p95_ms)
            ratios.append(
                {
                    "operation": operation,
                    "concurrency": concurrency,
                    "median_ratio": ratio(mine.median_ms, theirs.median_ms),
                    "p95_ratio": p95_ratio,
                }
            )
            limit = P95_GOALS[operation]
            goals.append(
                {
                    "goal": f"{operation} p95 <= 1/{round(1 / limit)} of {reference.label} "
                    f"at {concurrency} clients",
                    "value": p95_ratio,
                    "limit": limit,
                    "met": p95_ratio is not None and p95_ratio <= limit,
                }
            )
    error_concurrency = (
        ZERO_ERROR_CONCURRENCY if ZERO_ERROR_CONCURRENCY in concurrencies else max(concurrencies)
    )
    errors = sum(p.errors for p in candidate.phases if p.concurrency == error_concurrency)
    measured = any(p.concurrency == error_concurrency for p in candidate.phases)
    goals.append(
        {
            "goal": f"zero errors for {candidate.label} at {error_concurrency} clients",
            "value": errors,
            "limit": 0,
            "met": measured and errors == 0,
        }
    )
    return ratios, goals


def render_comparison(
    candidate: TargetResult,
    reference: TargetResult,
    ratios: list[dict[str, Any]],
    goals: list[dict[str, Any]],
) -> str:
    lines = [
        f"== ratios {candidate.label}/{reference.label} (lower is better for {candidate.label})",
        f"   {'phase':<8}{'clients':>8}{'median':>9}{'p95':>9}",
    ]
    for row in ratios:
        lines.append(
            f"   {row['operation']:<8}{row['concurrency']:>8}"
            f"{fmt_num(row['median_ratio'], 2):>9}{fmt_num(row['p95_ratio'], 2):>9}"
        )
    lines.append("== goals")
    for goal in goals:
        value = goal["value"]
        shown = fmt_num(value, 2) if isinstance(value, float) else str(value)
        verdict = "PASS" if goal["met"] else "FAIL"
        lines.append(f"   [{verdict}] {goal['goal']}: {shown} (limit {fmt_num(goal['limit'], 2)})")
    return "\n".join(lines)


# --------------------------------------------------------------------- CLI


def parse_target(text: str) -> Target:
    label, sep, url = text.partition("=")
    if not sep or not label or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected LABEL=http://HOST:PORT, got {text!r}")
    return Target(label, url.rstrip("/"))


def parse_concurrencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,16, got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Latency of the Images-v2 metadata API (list / show / create).",
    )
    parser.add_argument(
        "--target",
        action="append",
        type=parse_target,
        required=True,
        metavar="LABEL=URL",
        help="endpoint to measure; repeat for several. With two or more, "
        "ratios and goals compare the first to the second",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=10_000,
        help="images to load before measuring (default 10000)",
    )
    parser.add_argument(
        "--load-clients",
        type=positive_int,
        default=8,
        help="concurrent clients while loading (default 8)",
    )
    parser.add_argument(
        "--concurrency",
        type=parse_concurrencies,
        default=[1, 16],
        help="comma list of client counts (default 1,16)",
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=300,
        help="measured requests per phase (default 300)",
    )
    parser.add_argument(
        "--warmup",
        type=positive_int,
        default=2,
        help="unmeasured requests per client before each phase (default 2)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)"
    )
    parser.add_argument(
        "--project",
        default=None,
        help="project id (default bench-<random>); reuse one to skip loading",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--json",
        dest="json_path",
        default=None,
        metavar="FILE",
        help="write the results as JSON to FILE",
    )
    args = parser.parse_args(argv)
    labels = [t.label for t in args.target]
    if len(set(labels)) != len(labels):
        parser.error("target labels must be unique")
    if args.load_clients < 1:
        parser.error("--load-clients must be at least 1")
    return Settings(
        targets=args.target,
        images=args.images,
        load_clients=args.load_clients,
        concurrencies=args.concurrency,
        requests=args.requests,
        warmup=args.warmup,
        timeout=args.timeout,
        project=args.project or f"bench-{uuid.uuid4().hex[:12]}",
        seed=args.seed,
        json_path=args.json_path,
    )


async def run(settings: Settings) -> dict[str, Any]:
    started = datetime.now(UTC)
    commit = source_commit()
    results: list[TargetResult] = []
    for target in settings.targets:
        results.append(await bench_target(target, settings))
    for result in results:
        print(render_target(result))
        print()
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "settings": {
            "images": settings.images,
            "load_clients": settings.load_clients,
            "concurrency": settings.concurrencies,
            "requests_per_phase": settings.requests,
            "warmup_per_phase": settings.warmup,
            "timeout_s": settings.timeout,
            "project": settings.project,
            "seed": settings.seed,
            "list_page_size": LIST_PAGE_SIZE,
            "python": platform.python_version(),
            "httpx": httpx.__version__,
        },
        "targets": [asdict(result) for result in results],
    }
    if len(results) >= 2:
        candidate, reference = results[0], results[1]
        ratios, goals = compare(candidate, reference, settings.concurrencies)
        print(render_comparison(candidate, reference, ratios, goals))
        report["comparison"] = {
            "candidate": candidate.label,
            "reference": reference.label,
            "ratios": ratios,
            "goals": goals,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        report = asyncio.run(run(settings))
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        log(f"benchmark aborted: {type(exc).__name__}: {exc}")
        return 2
    if settings.json_path:
        with open(settings.json_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        log(f"results written to {settings.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
