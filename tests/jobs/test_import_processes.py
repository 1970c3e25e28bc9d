"""Interoperable import run by real processes: one `glint serve` (running no jobs) and
`glint worker` processes sharing the test database (GLINT_TEST_DB) and one data directory with
two file stores.

- 50 imports of every method, run by two workers: each runs exactly once and every image
  ends `active` with its data, in the stores asked for, and nothing else left in them;
- a worker killed (SIGKILL) in the middle of an import: the other worker runs the job again
  once its lease has run out, after removing what the dead attempt wrote;
- the API process killed in the middle of an upload and of a stage: once the upload lease has
  run out, `glint scrub` (or the workers' sweep) puts the images back to `queued`, and the
  clean-up jobs leave no partial bytes.

All of it runs on SQLite too (WAL, and every write transaction BEGIN IMMEDIATE with a busy
timeout: the processes' writers queue), so no test is restricted to the server databases.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from app.db.base import utcnow
from app.db.engine import Database
from app.images.imports import IMPORT_JOB
from app.images.ingest import BATCH_SIZE
from app.images.models import ImageUpload
from app.images.uploads import DISCARD_UPLOAD_JOB
from app.jobs.models import JobStatus
from tests.jobs.import_processes_support import (
    Api,
    Deployment,
    SlowBody,
    WebServer,
    api,
    md5,
    pid_of,
    wait_until,
    web_server,
)

GLANCE_DIRECT = "glance-direct"
WEB_DOWNLOAD = "web-download"
COPY_IMAGE = "copy-image"


@pytest.fixture
def web() -> Iterator[WebServer]:
    with web_server() as server:
        yield server


@pytest.fixture
def deployment_for(
    tmp_path: Path, database_url: str, db: Database, web: WebServer
) -> Iterator[Callable[..., Deployment]]:
    """Deployments on the test database; `db` is emptied only after their processes are
    killed (this fixture's teardown runs first)."""
    started: list[Deployment] = []

    def deployment(**settings: str) -> Deployment:
        started.append(
            Deployment(
                tmp_path,
                database_url,
                db,
                GLINT_IMPORT__ALLOWED_HOSTS='["127.0.0.1"]',
                GLINT_IMPORT__ALLOWED_PORTS=f"[{web.port}]",
                **settings,
            )
        )
        return started[-1]

    try:
        yield deployment
    finally:
        for each in started:
            each.__exit__(None, None, None)


# --- 1. many imports, two workers: each exactly once ------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One image's import: how, into which stores, and the stores it ends in."""

    method: str
    stores: tuple[str, ...] | None  # None: the import names none (the default store)
    ends_in: frozenset[str]


PLANS = (
    # Staged into `local`, the staging store: the staged object becomes the image's.
    Plan(GLANCE_DIRECT, None, frozenset({"local"})),
    # Copied from the staging store into `cheap`; the staged object is then removed by a job.
    Plan(GLANCE_DIRECT, ("cheap",), frozenset({"cheap"})),
    Plan(GLANCE_DIRECT, ("local", "cheap"), frozenset({"local", "cheap"})),
    Plan(WEB_DOWNLOAD, None, frozenset({"local"})),
    Plan(WEB_DOWNLOAD, ("local", "cheap"), frozenset({"local", "cheap"})),
    # Uploaded into `local`, then copied into `cheap`.
    Plan(COPY_IMAGE, ("cheap",), frozenset({"local", "cheap"})),
)
IMPORTS = 50


def run_plan(client: Api, web: WebServer, number: int, plan: Plan, data: bytes) -> str:
    image_id = client.create()
    method: dict[str, Any] = {"name": plan.method}
    if plan.method == GLANCE_DIRECT:
        client.stage(image_id, data)
    elif plan.method == WEB_DOWNLOAD:
        path = f"/images/{number}.raw"
        web.files[path] = data
        method["uri"] = web.url(path)
    else:
        client.upload(image_id, data)
    body: dict[str, Any] = {"method": method}
    if plan.stores is not None:
        body["stores"] = list(plan.stores)
    client.start_import(image_id, body)
    return image_id


def test_imports_of_every_method_each_run_exactly_once_by_two_workers(
    deployment_for: Callable[..., Deployment], web: WebServer
) -> None:
    # Many small, differing images: the two workers race for 50 jobs.
    rng = random.Random(1234)
    plans = [PLANS[number % len(PLANS)] for number in range(IMPORTS)]
    datas = [rng.randbytes(rng.randint(1, 1_200_000)) for _ in range(IMPORTS)]
    with deployment_for() as deployment:
        server = deployment.serve()
        a, b = deployment.start_worker("a"), deployment.start_worker("b")
        with api(server) as client, ThreadPoolExecutor(max_workers=8) as pool:
            image_ids = list(
                pool.map(
                    lambda number: run_plan(client, web, number, plans[number], datas[number]),
                    range(IMPORTS),
                )
            )
            wait_until(
                lambda: (
                    len(deployment.jobs(IMPORT_JOB)) == IMPORTS and not deployment.unfinished_jobs()
                ),
                "every job to end",
                seconds=45,
                alive=deployment.problem,
            )

            # Every task succeeded, one per image.
            for image_id in image_ids:
                tasks = deployment.tasks(image_id)
                assert [task.status for task in tasks] == ["success"], (image_id, tasks)

            # Each import job ran once, by one of the two workers (none in the API process).
            imports = deployment.jobs(IMPORT_JOB)
            assert len(imports) == IMPORTS
            for job in imports:
                assert (job.status, job.attempts, job.last_error) == (
                    JobStatus.SUCCEEDED,
                    1,
                    None,
                ), job
                assert job.running_lock is None
            ran_by = [pid_of(job) for job in imports]
            assert set(ran_by) == {a.pid, b.pid}, "both workers took part"
            # The staged objects copied elsewhere were removed, each by one job run once.
            discards = deployment.jobs(DISCARD_UPLOAD_JOB)
            copied_from_staging = sum(
                plan.method == GLANCE_DIRECT and "local" not in plan.ends_in for plan in plans
            )
            assert len(discards) == copied_from_staging
            assert all(
                (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1) for job in discards
            ), discards

            # Every image active, with its data, in the stores it was imported into.
            for image_id, plan, data in zip(image_ids, plans, datas, strict=True):
                image = client.show(image_id)
                assert (image["status"], image["checksum"], image["size"]) == (
                    "active",
                    md5(data),
                    len(data),
                ), (plan, image)
                assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
                assert frozenset(image["stores"].split(",")) == plan.ends_in, (plan, image)
                assert "os_glance_import_task" not in image
                assert image["os_glance_failed_import"] == ""
                downloaded = client.download(image_id)
                assert downloaded.status_code == 200
                assert downloaded.headers["Content-MD5"] == md5(data)
                assert md5(downloaded.content) == md5(data), plan

        # The stores hold the images' objects and nothing else: no staged or orphaned bytes.
        locations = deployment.locations()
        assert len(locations) == sum(len(plan.ends_in) for plan in plans)
        for store in ("local", "cheap"):
            expected = sorted(
                location.url.removeprefix("file://")
                for location in locations
                if location.store_id == store
            )
            held = [str(path) for path in deployment.files(store)]
            assert held == expected, store
        assert deployment.problem() is None
        print(
            f"\nimports run by worker a: {ran_by.count(a.pid)}, by worker b: {ran_by.count(b.pid)}"
        )


# --- 2. a worker killed in the middle of an import --------------------------------------------


def test_an_import_whose_worker_is_killed_is_finished_by_the_other_after_the_lease(
    deployment_for: Callable[..., Deployment], web: WebServer
) -> None:
    # The import hashes and writes in batches of ingest.BATCH_SIZE (8 MiB): the first 9 MiB
    # come at once, so that a first batch reaches the store, then the rest slowly (the whole
    # would take about 20 s more); the retry's download gets it all at once.
    data = os.urandom(BATCH_SIZE + 4 * 1024 * 1024)
    path = "/slow.raw"
    web.files[path] = data
    web.slow.add(path)
    web.fast_start = BATCH_SIZE + 1024 * 1024
    with deployment_for() as deployment:
        server = deployment.serve()
        workers = {worker.pid: worker for worker in map(deployment.start_worker, ("a", "b"))}
        with api(server) as client:
            image_id = client.create()
            client.start_import(image_id, {"method": {"name": WEB_DOWNLOAD, "uri": web.url(path)}})
            task_id = client.show(image_id)["os_glance_import_task"]
            staging = deployment.roots["local"] / "_staging"
            first_attempt = staging / f"{image_id}.{task_id[:8]}.1"
            wait_until(
                lambda: first_attempt.exists() and first_attempt.stat().st_size >= BATCH_SIZE,
                "the first attempt to write its first batch",
                alive=deployment.problem,
            )
            job = deployment.import_job(image_id)
            assert (job.status, job.attempts) == (JobStatus.RUNNING, 1)
            victim = workers.pop(pid_of(job) or 0)
            (survivor,) = workers.values()
            victim.kill()
            killed_at = time.time()
            assert web.completions(path) == [], "the kill landed after the download"
            assert first_attempt.exists()  # what the dead attempt left
            job = deployment.import_job(image_id)
            assert job.lease_until is not None
            lease_until = job.lease_until.replace(tzinfo=UTC).timestamp()
            # Importing until the lease runs out; no one else runs the job meanwhile.
            assert client.status(image_id) == "importing"
            assert len(web.fetch_times(path)) == 1

            # The task ends in the handler's last transaction, the job just after it.
            wait_until(
                lambda: (
                    [task.status for task in deployment.tasks(image_id)] == ["success"]
                    and not deployment.unfinished_jobs()
                ),
                "the other worker to finish the import",
                alive=deployment.problem,
            )
            first_fetch, retry_fetch = web.fetch_times(path)
            # Not before the dead worker's lease ran out (a little slack: the two clocks are
            # one, but the database rounds its timestamps).
            assert retry_fetch >= lease_until - 0.01
            job = deployment.import_job(image_id)
            assert (job.status, job.attempts, job.last_error, job.running_lock) == (
                JobStatus.SUCCEEDED,
                2,
                None,
                None,
            )
            assert pid_of(job) == survivor.pid
            image = client.show(image_id)
            assert (image["status"], image["checksum"], image["size"]) == (
                "active",
                md5(data),
                len(data),
            )
            downloaded = client.download(image_id)
            assert md5(downloaded.content) == md5(data)
        # Only the image's one object, written by the second attempt; the first's is gone.
        assert deployment.files("local") == [
            deployment.roots["local"] / f"{image_id}.{task_id[:8]}.2"
        ]
        assert deployment.files("cheap") == []
        assert deployment.problem() is None
        print(
            f"\nkilled {killed_at - first_fetch:.1f} s into the download; the lease ran out "
            f"{lease_until - killed_at:.1f} s after the kill; the retry started "
            f"{retry_fetch - killed_at:.1f} s after the kill"
        )


# --- 3. the API process killed in the middle of an upload and of a stage ------------------------


UPLOAD_LEASE_SECONDS = 3


def leases_expired(db: Database) -> bool:
    with db.session(write=False) as session:
        live = session.exec(select(ImageUpload).where(col(ImageUpload.lease_until) >= utcnow()))
        return live.first() is None


@pytest.mark.parametrize("recovered_by", ["scrub", "workers"])
def test_uploads_and_stages_of_a_killed_api_process_are_reset_and_their_bytes_removed(
    deployment_for: Callable[..., Deployment], recovered_by: str
) -> None:
    """`scrub`: no worker runs until `glint scrub` has reset the images; then a worker runs
    the clean-up jobs that the scrub enqueued. `workers`: two workers run throughout, and
    their sweep does it all, leaving nothing for a scrub."""
    with deployment_for(GLINT_UPLOADS__LEASE_SECONDS=str(UPLOAD_LEASE_SECONDS)) as deployment:
        if recovered_by == "workers":
            deployment.start_worker("a")
            deployment.start_worker("b")
        first = deployment.serve()
        with api(first) as client:
            uploaded, staged = client.create(), client.create()
        bodies = [
            SlowBody(first.port, f"/v2/images/{uploaded}/file"),
            SlowBody(first.port, f"/v2/images/{staged}/stage"),
        ]
        try:
            staging = deployment.roots["local"] / "_staging"

            def both_partial() -> bool:
                files = list(staging.glob("*")) if staging.exists() else []
                names = [path.name for path in files if path.stat().st_size > 0]
                return all(any(name.startswith(i) for name in names) for i in (uploaded, staged))

            wait_until(both_partial, "both bodies to reach the store", alive=deployment.problem)
            with api(first) as client:
                assert (client.status(uploaded), client.status(staged)) == ("saving", "uploading")
            first.process.kill()
            first.process.wait(timeout=10)
            wait_until(
                lambda: all(body.ended is not None for body in bodies),
                "the clients to see the server gone",
            )
        finally:
            for body in bodies:
                body.stop()
        assert len(deployment.files("local")) == 2  # the partial bytes the dead server left

        second = deployment.serve()
        with api(second) as client:
            if recovered_by == "scrub":
                # No worker runs: nothing recovers the images until the scrub.
                assert (client.status(uploaded), client.status(staged)) == ("saving", "uploading")
                wait_until(lambda: leases_expired(deployment.db), "the upload leases to run out")
                said = deployment.scrub()
                assert said.startswith("2 stalled uploads reset to queued"), said
                assert (client.status(uploaded), client.status(staged)) == ("queued", "queued")
                discards = deployment.jobs(DISCARD_UPLOAD_JOB)
                assert [job.status for job in discards] == [JobStatus.QUEUED] * 2
                assert len(deployment.files("local")) == 2  # until a worker runs the jobs
                deployment.start_worker("a")
            else:
                wait_until(
                    lambda: (
                        (client.status(uploaded), client.status(staged)) == ("queued", "queued")
                    ),
                    "the workers' sweep to reset the images",
                    seconds=4 * UPLOAD_LEASE_SECONDS + 5,
                    alive=deployment.problem,
                )
            wait_until(
                lambda: (
                    len(deployment.jobs(DISCARD_UPLOAD_JOB)) == 2
                    and not deployment.unfinished_jobs()
                ),
                "the clean-up jobs to run",
                alive=deployment.problem,
            )
            assert deployment.all_files() == []
            discards = deployment.jobs(DISCARD_UPLOAD_JOB)
            assert [(job.status, job.attempts) for job in discards] == [
                (JobStatus.SUCCEEDED, 1)
            ] * 2
            if recovered_by == "workers":
                said = deployment.scrub()
                assert said.startswith("0 stalled uploads reset to queued"), said
            for image_id in (uploaded, staged):
                image = client.show(image_id)
                assert (image["size"], image["checksum"]) == (None, None)

            # Both can be given their data again.
            data = os.urandom(500_000)
            client.upload(uploaded, data)
            client.stage(staged, data)
            client.start_import(staged, {"method": {"name": GLANCE_DIRECT}})
            wait_until(
                lambda: client.status(staged) != "importing",
                "the import",
                alive=deployment.problem,
            )
            for image_id in (uploaded, staged):
                image = client.show(image_id)
                assert (image["status"], image["checksum"]) == ("active", md5(data))
                assert md5(client.download(image_id).content) == md5(data)
        assert len(deployment.files("local")) == 2  # the two images' objects, nothing staged
        assert not any(path.parent.name == "_staging" for path in deployment.all_files())
        assert deployment.problem() is None
