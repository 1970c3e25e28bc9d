"""Metrics: what the layers record (`Metrics`), and Prometheus behind it (`PrometheusMetrics`).

The domain, the stores and the worker are given a `Metrics` and call its methods; the base class
records nothing (metrics switched off, and the default for code built without metrics), so they
need no checks of their own. `PrometheusMetrics` records for `/metrics`.

Several server processes (`glint serve` with more than one worker) share their numbers through
prometheus-client's multiprocess mode: each process writes its values to files in the directory
named by PROMETHEUS_MULTIPROC_DIR, and a scrape of any process adds up those of all. The mode is
chosen when prometheus-client is first imported, so the variable must be set before the process
starts (`glint serve` makes a fresh directory and sets it for the processes it starts). Without
it, a process keeps its numbers in memory, as a test's app does.

Label values come only from bounded sets: route templates (never raw paths), the usual HTTP
methods, store ids and job names from the code and the settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The label of a request that no route served: refused at the edge, or no such path.
UNMATCHED = "unmatched"
# From a quick JSON answer to a multi-GiB transfer.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
# The job statuses worth a gauge (succeeded jobs stay in the table and only grow).
JOB_GAUGE_STATUSES = ("queued", "running", "failed")

JobCounts = Callable[[], Mapping[tuple[str, str], int]]


class Metrics:
    """What the layers record; this base class records nothing."""

    # Whether anything is recorded: code that would do extra work to record may skip it.
    enabled = False

    def request(self, method: str, route: str | None, status: int | None, seconds: float) -> None:
        """An HTTP request answered (status None: it ended before a response started); `route`
        is the template that served it, None when none did."""

    def bytes_uploaded(self, store: str, count: int) -> None:
        """Image bytes written to a store."""

    def bytes_downloaded(self, store: str, count: int) -> None:
        """Image bytes read from a store."""

    def upload_started(self) -> None:
        """An upload starts streaming (each is followed by one `upload_ended`)."""

    def upload_ended(self) -> None:
        """An upload stopped streaming, whatever its outcome."""

    def store_error(self, store: str, operation: str, error: BaseException) -> None:
        """A store operation failed (a StoreError)."""

    def job_failed(self, job: str) -> None:
        """An attempt at a background job failed (it may be retried)."""

    def close(self) -> None:
        """This process stops serving."""


NO_METRICS = Metrics()


class PrometheusMetrics(Metrics):
    enabled = True

    def __init__(self) -> None:
        # prometheus-client made this choice when it was imported (see the module docstring).
        self.multiprocess = values.ValueClass is not values.MutexValue
        # `*_created` series double the series count and say nothing Prometheus does not know.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = self.registry = CollectorRegistry()
        self._requests = Counter(
            "glint_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "glint_http_request_duration_seconds",
            "Time from a request's headers to the end of its response, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._uploaded = Counter(
            "glint_image_bytes_uploaded",
            "Image bytes written to a store (uploads, including those that failed later).",
            ["store"],
            registry=registry,
        )
        self._downloaded = Counter(
            "glint_image_bytes_downloaded",
            "Image bytes read from a store (downloads, including those cut short).",
            ["store"],
            registry=registry,
        )
        self._uploads = Gauge(
            "glint_uploads_in_progress",
            "Uploads streaming right now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._store_errors = Counter(
            "glint_store_errors",
            "Failed store operations, by store, operation and error.",
            ["store", "operation", "error"],
            registry=registry,
        )
        self._job_failures = Counter(
            "glint_job_failures",
            "Failed attempts at background jobs in this process's workers, by job name.",
            ["job"],
            registry=registry,
        )
        if self.multiprocess:
            # Scrapes read every process's files, this one's included.
            self.exposition_registry = CollectorRegistry()
            MultiProcessCollector(self.exposition_registry)  # type: ignore[no-untyped-call]
        else:
            self.exposition_registry = registry

    def track_jobs(self, counts: JobCounts, names: Iterable[str]) -> None:
        """Adds the `glint_jobs` gauge: `counts()` at each scrape, (name, status) -> jobs, with
        zeros for `names` so that their series always exist."""
        self.exposition_registry.register(_JobsCollector(counts, tuple(names)))

    def render(self) -> tuple[bytes, str]:
        """The exposition (Prometheus text format) and its content type."""
        return generate_latest(self.exposition_registry), CONTENT_TYPE_LATEST

    def request(self, method: str, route: str | None, status: int | None, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        route = route or UNMATCHED
        self._requests.labels(method, route, "none" if status is None else str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def bytes_uploaded(self, store: str, count: int) -> None:
        self._uploaded.labels(store).inc(count)

    def bytes_downloaded(self, store: str, count: int) -> None:
        self._downloaded.labels(store).inc(count)

    def upload_started(self) -> None:
        self._uploads.inc()

    def upload_ended(self) -> None:
        self._uploads.dec()

    def store_error(self, store: str, operation: str, error: BaseException) -> None:
        self._store_errors.labels(store, operation, type(error).__name__).inc()

    def job_failed(self, job: str) -> None:
        self._job_failures.labels(job).inc()

    def close(self) -> None:
        if self.multiprocess:
            # The live gauges of a process that stopped must not count any more.
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _JobsCollector(Collector):
    """`glint_jobs{job, status}`, counted in the database at scrape time: the same for every
    process, whichever runs the jobs."""

    def __init__(self, counts: JobCounts, names: tuple[str, ...]):
        self._counts = counts
        self._names = names

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "glint_jobs",
            "Background jobs in the queue by name and status (queued, running, failed).",
            labels=["job", "status"],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            counts = dict(self._counts())
        except Exception:  # the database is away: the series are missing from this scrape
            log.warning("could not count the jobs for /metrics", exc_info=True)
            yield family
            return
        for name in self._names:
            for status in JOB_GAUGE_STATUSES:
                counts.setdefault((name, status), 0)
        for (name, status), count in sorted(counts.items()):
            family.add_metric([name, status], count)
        yield family
