"""`/metrics`: Prometheus text, by route template; bytes by store, uploads in progress, store
errors, jobs; nothing when switched off; and several server processes adding up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import MetricsSettings, Settings
from app.db.engine import Database
from app.jobs.queue import enqueue
from app.main import create_app
from app.metrics import NO_METRICS, Metrics, PrometheusMetrics
from app.storage import metered
from app.storage.file import FileStore
from app.storage.metered import MeteredStore
from tests.identities import A
from tests.serving import serve

OCTET = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(300_000)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient | httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, **labels: str) -> float:
    return value(samples, "glint_http_requests_total", **labels)


def create(client: TestClient) -> dict[str, Any]:
    body = {"disk_format": "raw", "container_format": "bare"}
    response = client.post("/v2/images", json=body, headers=A)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def test_metrics_is_prometheus_text_and_not_part_of_the_api(client: TestClient) -> None:
    response = client.get("/metrics")
    # Not the versions document (300) that unversioned paths get, nor JSON.
    assert response.status_code == 200
    assert "# TYPE glint_http_requests_total counter" in response.text
    assert "# TYPE glint_http_request_duration_seconds histogram" in response.text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    # No `*_created` series: they would double the series for nothing.
    assert "_created" not in response.text


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    image = create(client)
    path = f"/v2/images/{image['id']}"
    for _ in range(2):
        assert client.get(path, headers=A).status_code == 200
    assert client.get(f"/v2.1/images/{image['id']}", headers=A).status_code == 200  # an alias
    assert client.get(f"/v2/images/{uuid.uuid4()}", headers=A).status_code == 404
    assert client.get("/nowhere", headers=A).status_code == 300  # the versions document
    assert client.request("PROPFIND", "/v2/images", headers=A).status_code == 405

    samples = scrape(client)
    template = "/v2/images/{image_id}"
    assert requests_of(samples, method="GET", route=template, status="200") == 3
    assert requests_of(samples, method="GET", route=template, status="404") == 1
    assert requests_of(samples, method="POST", route="/v2/images", status="201") == 1
    assert requests_of(samples, method="GET", route="unmatched", status="300") == 1
    # An unusual method is `other`: clients must not mint label values.
    assert requests_of(samples, method="other", route="/v2/images", status="405") == 1
    histogram = "glint_http_request_duration_seconds_count"
    assert value(samples, histogram, method="GET", route=template) == 4
    assert value(samples, histogram, method="POST", route="/v2/images") == 1
    # Never a raw path: ids would make the label values unbounded.
    labels = {label for (_, pairs) in samples for _, label in pairs}
    assert not any(image["id"] in label for label in labels)


def test_bytes_by_store_and_uploads_in_progress(app: FastAPI, client: TestClient) -> None:
    metrics: PrometheusMetrics = app.state.metrics
    image = create(client)
    seen_in_progress: list[float] = []

    def body() -> Iterator[bytes]:
        yield DATA[:100_000]
        seen_in_progress.append(
            value(parse(metrics.render()[0].decode()), "glint_uploads_in_progress")
        )
        yield DATA[100_000:]

    assert client.put(image["file"], content=body(), headers={**A, **OCTET}).status_code == 204
    assert seen_in_progress == [1]
    assert client.get(image["file"], headers=A).content == DATA
    ranged = client.get(image["file"], headers={**A, "Range": "bytes=0-9"})
    assert ranged.status_code == 206

    samples = scrape(client)
    assert value(samples, "glint_image_bytes_uploaded_total", store="local") == len(DATA)
    assert value(samples, "glint_image_bytes_downloaded_total", store="local") == len(DATA) + 10
    assert value(samples, "glint_uploads_in_progress") == 0
    # A failed upload counts what reached the store, and ends its "in progress" too.
    second = create(client)
    response = client.put(
        second["file"], content=DATA, headers={**A, **OCTET, "x-openstack-image-size": "10"}
    )
    assert response.status_code == 400
    assert value(scrape(client), "glint_uploads_in_progress") == 0


def test_store_errors_by_store_operation_and_error(client: TestClient, settings: Settings) -> None:
    image = create(client)
    assert client.put(image["file"], content=DATA, headers={**A, **OCTET}).status_code == 204
    for stored in (settings.data_dir / "images").rglob("*"):
        if stored.is_file():
            stored.unlink()  # lost behind Glint's back

    assert client.get(image["file"], headers=A).status_code == 204  # Glance's answer, too

    samples = scrape(client)
    errors = "glint_store_errors_total"
    assert value(samples, errors, store="local", operation="read", error="ObjectNotFound") == 1


def test_job_failures_and_the_queue(app: FastAPI, client: TestClient, db: Database) -> None:
    with db.session() as session:
        enqueue(session, "test.no_such_handler", {}, max_attempts=1)
    samples = scrape(client)
    assert value(samples, "glint_jobs", job="test.no_such_handler", status="queued") == 1
    # The jobs Glint knows have their series even when there are none.
    assert ("glint_jobs", frozenset({"job": "image.delete_data", "status": "queued"}.items())) in (
        samples
    )

    assert asyncio.run(app.state.worker.run_once())

    samples = scrape(client)
    assert value(samples, "glint_job_failures_total", job="test.no_such_handler") == 1
    assert value(samples, "glint_jobs", job="test.no_such_handler", status="queued") == 0
    assert value(samples, "glint_jobs", job="test.no_such_handler", status="failed") == 1


def test_switched_off_nothing_is_recorded_and_metrics_is_404(
    settings: Settings, db: Database
) -> None:
    off = settings.model_copy(update={"metrics": MetricsSettings(enabled=False)})
    app = create_app(off, database=db)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/v2/images", headers=A).status_code == 200
    assert app.state.metrics is NO_METRICS
    assert isinstance(app.state.stores.default, FileStore)  # no counting wrapper


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording(Metrics):
    enabled = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def bytes_uploaded(self, store: str, count: int) -> None:
        self.calls.append(("up", store, count))

    def bytes_downloaded(self, store: str, count: int) -> None:
        self.calls.append(("down", store, count))


@pytest.mark.anyio
async def test_bytes_reach_the_metrics_in_a_few_updates_not_one_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metered, "FLUSH_BYTES", 1000)
    recording = Recording()
    store = MeteredStore(
        FileStore("s", tmp_path, fsync=False, read_chunk_size=64 * 1024), recording
    )
    writer = await store.open_writer("key")
    for _ in range(25):
        await writer.write(b"x" * 100)
    stored = await writer.commit()
    assert recording.calls == [("up", "s", 1000), ("up", "s", 1000), ("up", "s", 500)]

    recording.calls.clear()
    chunks = store.open_reader(stored.location, 0, 10)
    assert [chunk async for chunk in chunks] == [b"x" * 10]
    assert recording.calls == [("down", "s", 10)]


# --- several server processes ------------------------------------------------------------------


def test_server_processes_add_up_their_metrics(tmp_path: Path) -> None:
    """Two server processes answer in turn (the kernel picks); every scrape, whichever process
    answers it, counts the requests of both."""
    settings = {
        "GLINT_SERVER__WORKERS": "2",
        "GLINT_LOGGING__FORMAT": "json",
        # Where `glint serve` makes its private metrics directory.
        "TMPDIR": str(tmp_path),
    }
    with serve(tmp_path, settings=settings) as server:
        (directory,) = tmp_path.glob("glint-metrics-*")
        assert directory.stat().st_mode & 0o777 == 0o700

        def get(index: int) -> None:
            with httpx.Client(base_url=server.base_url) as client:  # a new connection each
                assert client.get("/v2/images", headers={"x-openstack-request-id": f"n{index}"})

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while len(_processes_that_answered(server.output())) < 2:
                assert sent < 2000, "one server process answered every request"
                list(pool.map(get, range(sent, sent + 40)))
                sent += 40
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(4):
                assert requests_of(
                    scrape(client), route="/v2/images", method="GET", status="200"
                ) == (sent)
        server.stop()
    assert not directory.exists()


def _processes_that_answered(output: str) -> set[int]:
    return {
        entry["process"]
        for line in output.splitlines()
        if line.startswith("{")
        and (entry := json.loads(line))["logger"] == "glint.access"
        and re.fullmatch(r"req-n\d+", entry["request_id"] or "")
    }


def test_one_server_process_counts_in_the_shared_directory_too(tmp_path: Path) -> None:
    """With one server process uvicorn runs the app in `glint serve`'s own process, which set
    PROMETHEUS_MULTIPROC_DIR before prometheus-client was imported."""
    settings = {"GLINT_SERVER__WORKERS": "1", "TMPDIR": str(tmp_path)}
    with (
        serve(tmp_path, settings=settings) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        for _ in range(3):
            client.get("/versions")
        assert requests_of(scrape(client), route="/versions", method="GET", status="200") == 3
        (directory,) = tmp_path.glob("glint-metrics-*")
        assert {path.name.split("_")[0] for path in directory.iterdir()} >= {"counter", "gauge"}
