"""The import job: runs one import method through the ingest pipeline into the target stores
and ends the task and the image's import in one transaction.

Every way an import can end is one of two transactions: `_succeed` (the image `active`, its new
locations, the task `success`) or `_fail` (the image back to `queued`, or unchanged for
copy-image, the task `failure` with the cause). The job is durable: a worker that dies leaves
the job to be claimed again once its lease runs out, and that attempt first removes what the
dead one wrote (each attempt writes objects of its own keys). An image deleted meanwhile stops
the import at the next progress report; nothing it wrote is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from anyio import to_thread

from app.db.engine import Database
from app.errors import GlintError
from app.images.data import Copy, ImageData
from app.images.imports import (
    COPY_IMAGE,
    FAILED_IMPORT,
    GLANCE_DIRECT,
    IMPORT_JOB,
    IMPORT_TASK,
    IMPORTING_TO,
    MAX_IMPORT_ATTEMPTS,
    WEB_DOWNLOAD,
    attempt_key,
    joined,
    staging_key,
    store_list,
)
from app.images.ingest import HASH_ALGORITHM, Expectations, IngestFacts, Inspection, Target, ingest
from app.images.locations import by_weight, redact
from app.images.models import Image, ImageLocation, ImageStaging
from app.images.repository import ImageRepository
from app.images.status import ImageStatus
from app.images.uploads import (
    CLEARED_DATA_FACTS,
    DISCARD_UPLOAD_JOB,
    discard_payload,
    release_staged,
    staging_row,
)
from app.jobs.queue import enqueue
from app.jobs.worker import Handler
from app.storage.base import Store
from app.storage.errors import StoreError, UnknownStore
from app.storage.registry import StoreRegistry
from app.tasks.models import FINISHED, TaskStatus
from app.tasks.repository import TaskRepository

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class Download(Protocol):
    """What a web-download source opens: the body's length when the server says it."""

    size: int | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


# Opens `uri` for reading, refusing a body longer than the size cap.
OpenDownload = Callable[[str, int], Awaitable[Download]]


class ImportFailed(GlintError):
    """Why an import failed, in words for the task's message."""


class ImportAborted(Exception):
    """The image was deleted, or its import lock taken, while the import ran."""


@dataclass(frozen=True)
class ImportJob:
    task_id: str
    image_id: str
    method: str
    uri: str | None
    stores: tuple[str, ...]
    all_stores_must_succeed: bool
    previous_status: ImageStatus
    attempt: int

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ImportJob:
        return cls(
            task_id=payload["task_id"],
            image_id=payload["image_id"],
            method=payload["method"],
            uri=payload.get("uri"),
            stores=tuple(payload["stores"]),
            all_stores_must_succeed=payload["all_stores_must_succeed"],
            previous_status=ImageStatus(payload["previous_status"]),
            attempt=payload.get("attempt", 1),
        )

    def key(self, attempt: int) -> str:
        return attempt_key(self.image_id, self.task_id, attempt)

    def staging_key(self, attempt: int) -> str:
        return staging_key(self.image_id, self.task_id, attempt)


@dataclass
class Outcome:
    """What the import wrote: store id -> location, and the stores that failed."""

    facts: IngestFacts | None = None
    written: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    # The store whose staged object became the image's copy there (no second write).
    promoted: str | None = None
    # The discard payload of a download this attempt staged (its object goes when it ends).
    staged_download: dict[str, str] | None = None


class Progress:
    """Counts the bytes an import moved, for the task's message."""

    def __init__(self, total: int | None):
        self.done = 0
        self.total = total

    def counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async def count() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                self.done += len(chunk)
                yield chunk

        return count()

    def message(self) -> str:
        done = f"Copied {self.done // MIB} MiB"
        if self.total:
            return f"{done} of {self.total // MIB} MiB ({100 * self.done // self.total}%)"
        return done


def handlers(
    db: Database,
    stores: StoreRegistry,
    *,
    size_cap: int,
    open_download: OpenDownload,
    multistore: bool,
    progress_interval: float = 2.0,
) -> dict[str, Handler]:
    runner = _ImportRunner(db, stores, size_cap, open_download, multistore, progress_interval)
    return {IMPORT_JOB: runner.run}


class _ImportRunner:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        size_cap: int,
        open_download: OpenDownload,
        multistore: bool,
        progress_interval: float,
    ):
        self.db = db
        self.stores = stores
        self.size_cap = size_cap
        self.open_download = open_download
        self.multistore = multistore
        self.progress_interval = progress_interval

    async def run(self, payload: dict[str, Any]) -> None:
        job = ImportJob.from_payload(payload)
        if not await to_thread.run_sync(self._start, job):
            return  # finished by an earlier attempt, or its task is gone
        await self._discard_earlier_attempts(job)
        if job.attempt > MAX_IMPORT_ATTEMPTS:
            await self._end(
                job,
                Outcome(),
                f"The import was interrupted {job.attempt - 1} times (its worker stopped "
                "each time); giving up.",
            )
            return
        outcome = Outcome()
        try:
            await self._import(job, outcome)
        except ImportAborted:
            await self._remove(outcome)
            await to_thread.run_sync(self._fail, job, outcome, "The import was stopped.")
            log.info("import of image %s stopped: the image was deleted", job.image_id)
            return
        except (GlintError, StoreError) as error:
            await self._end(job, outcome, _sentence(str(error)))
            return
        except Exception as error:  # a bug or an unforeseen failure: still a clean end
            log.exception("import of image %s failed", job.image_id)
            await self._end(job, outcome, f"The import failed: {type(error).__name__}: {error}")
            return
        await self._end(job, outcome, None)

    # --- the work ------------------------------------------------------------------------

    async def _import(self, job: ImportJob, outcome: Outcome) -> None:
        image, staged = await to_thread.run_sync(self._image_and_staging, job)
        targets = [self._target_store(store_id) for store_id in job.stores]
        # Unless every store must succeed, each is written on its own, so that one failing
        # does not fail the others.
        one_pass = job.all_stores_must_succeed or len(targets) <= 1
        progress = Progress(self._total(job, image, staged))
        if job.method == GLANCE_DIRECT:
            if staged is None:
                raise ImportFailed(f"The data staged for image {job.image_id} is missing.")
            if staged.format_problem:
                raise ImportFailed(staged.format_problem)
        elif job.method == WEB_DOWNLOAD and not one_pass:
            # Downloaded once, into staging, as Glance does: a URL need not give the same
            # bytes twice (a signed URL may not give them twice at all).
            staged = await self._stage_download(job, image, outcome, progress)
        if staged is not None and staged.store_id in job.stores:
            # The staged object is already in one of the target stores: it becomes the
            # image's copy there, unread and unwritten.
            outcome.promoted = staged.store_id
            outcome.written[staged.store_id] = staged.url
            targets = [store for store in targets if store.store_id != staged.store_id]
        groups = [targets] if one_pass else [[store] for store in targets]
        for group in groups:
            if not group:
                continue
            try:
                facts = await self._watched(
                    job, progress, self._ingest(job, image, staged, group, progress)
                )
            except (GlintError, StoreError) as error:
                if one_pass:
                    for store in group:
                        outcome.failed[store.store_id] = str(error)
                    raise
                outcome.failed[group[0].store_id] = str(error)
                log.warning(
                    "import of image %s into store %s failed: %s",
                    job.image_id,
                    group[0].store_id,
                    error,
                )
                continue
            outcome.facts = outcome.facts or facts
            for store, stored in zip(group, facts.stored, strict=True):
                outcome.written[store.store_id] = stored.location
        if staged is not None and outcome.facts is None and outcome.promoted:
            outcome.facts = _staged_facts(staged)
        if not outcome.written:
            first = next(iter(outcome.failed.values()), "no store took the data")
            raise ImportFailed(first)

    async def _stage_download(
        self, job: ImportJob, image: Image, outcome: Outcome, progress: Progress
    ) -> ImageStaging:
        """The download, into the staging store (the default store) under this attempt's
        staging key; removed by a job when the import ends, unless it became a copy."""
        store = self.stores.default
        key = job.staging_key(job.attempt)
        facts = await self._watched(
            job, progress, self._ingest(job, image, None, [store], progress, key=key)
        )
        outcome.staged_download = discard_payload(store.store_id, key, job.image_id)
        return staging_row(image.id, store.store_id, key, facts)

    async def _ingest(
        self,
        job: ImportJob,
        image: Image,
        staged: ImageStaging | None,
        group: list[Store],
        progress: Progress,
        *,
        key: str | None = None,
    ) -> IngestFacts:
        """The data, from staging if it was staged, else from its source, into `group`."""
        progress.done = 0
        inspection: Inspection | None = None
        download: Download | None = None
        if staged is not None:
            source = self._read_staged(staged)
            # Checked again: what staging holds is what was measured when it arrived.
            expect = Expectations(
                size=staged.size, checksum=staged.checksum, hash_value=staged.os_hash_value
            )
        elif job.method == WEB_DOWNLOAD:
            assert job.uri is not None
            download = await self.open_download(job.uri, self.size_cap)
            source = aiter(download)
            expect = Expectations()
            if image.container_format == "bare":
                inspection = Inspection(image.disk_format)
        else:
            source = await self._read_image(image)
            expect = Expectations(size=image.size, checksum=image.checksum)
        try:
            facts = await ingest(
                progress.counted(source),
                [Target(store, key or job.key(job.attempt)) for store in group],
                size_cap=self.size_cap,
                expect=expect,
                inspection=inspection,
                hash_algorithm=image.os_hash_algo or HASH_ALGORITHM,
            )
        finally:
            if download is not None:  # its connection, however the ingest ended
                await download.aclose()
        if staged is not None:
            return replace(facts, virtual_size=staged.virtual_size)
        return facts

    async def _read_staged(self, staged: ImageStaging) -> AsyncIterator[bytes]:
        async for chunk in self.stores.get(staged.store_id).open_reader(staged.url):
            yield chunk

    async def _read_image(self, image: Image) -> AsyncIterator[bytes]:
        """An active image's bytes, from its best copy (copy-image)."""
        rows = await to_thread.run_sync(self._locations, image.id)
        copies = []
        for row in by_weight(rows, self.stores.weight):
            try:
                copies.append(Copy(self.stores.for_location(row.url), row.url))
            except UnknownStore:
                continue
        if not copies:
            raise ImportFailed(f"No configured store holds the data of image {image.id}.")
        return await ImageData(image.id, image.size or 0, image.checksum, tuple(copies)).open()

    def _target_store(self, store_id: str) -> Store:
        try:
            return self.stores.get(store_id)
        except UnknownStore:
            raise ImportFailed(f"Store {store_id} is not configured on this worker.") from None

    @staticmethod
    def _total(job: ImportJob, image: Image, staged: ImageStaging | None) -> int | None:
        if staged is not None:
            return staged.size
        return image.size if job.method == COPY_IMAGE else None

    async def _watched(
        self, job: ImportJob, progress: Progress, work: Awaitable[IngestFacts]
    ) -> IngestFacts:
        """Runs `work`, writing its progress to the task every `progress_interval` seconds;
        stops it (ImportAborted) once the image is deleted or the task ended elsewhere."""
        running = asyncio.ensure_future(work)
        aborted = False

        async def watch() -> None:
            nonlocal aborted
            while True:
                await asyncio.sleep(self.progress_interval)
                if not await to_thread.run_sync(self._report, job, progress.message()):
                    aborted = True
                    running.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            return await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if aborted and (current is None or not current.cancelling()):
                raise ImportAborted() from None
            raise
        finally:
            watcher.cancel()

    async def _discard_earlier_attempts(self, job: ImportJob) -> None:
        """What earlier attempts (whose worker died) may have left in the target stores."""
        staging = self.stores.default.store_id
        for attempt in range(1, job.attempt):
            leftovers = [(store_id, job.key(attempt)) for store_id in job.stores]
            leftovers.append((staging, job.staging_key(attempt)))
            for store_id, key in leftovers:
                try:
                    await self.stores.get(store_id).discard(key)
                except (UnknownStore, StoreError):
                    log.warning(
                        "could not remove what attempt %d of the import of image %s left in "
                        "store %s",
                        attempt,
                        job.image_id,
                        store_id,
                        exc_info=True,
                    )

    async def _remove(self, outcome: Outcome) -> None:
        """Deletes what this attempt wrote (not a promoted staged object: its removal is the
        staging's, by a job)."""
        for store_id, location in list(outcome.written.items()):
            if store_id == outcome.promoted:
                continue
            try:
                await self.stores.get(store_id).delete(location)
            except StoreError:
                log.warning(
                    "could not delete an object the import wrote to store %s: %s",
                    store_id,
                    redact(StoreError(location), location),
                )
        outcome.written.clear()
        outcome.promoted = None
        if outcome.staged_download is not None:
            # Now, not only by the job the import's end enqueues: a deleted image's import
            # ends without one.
            try:
                await self.stores.get(outcome.staged_download["store_id"]).discard(
                    outcome.staged_download["key"]
                )
            except StoreError:
                log.warning(
                    "could not remove the download staged for image %s",
                    outcome.staged_download["image_id"],
                    exc_info=True,
                )

    async def _end(self, job: ImportJob, outcome: Outcome, failure: str | None) -> None:
        if failure is None and await to_thread.run_sync(self._succeed, job, outcome):
            return
        await self._remove(outcome)
        await to_thread.run_sync(
            self._fail,
            job,
            outcome,
            failure or "The image was deleted while it was imported; nothing was kept.",
        )

    # --- transactions ----------------------------------------------------------------------

    def _start(self, job: ImportJob) -> bool:
        """The task `processing`; False when there is nothing to do any more."""
        with self.db.session() as session:
            tasks = TaskRepository(session)
            task = tasks.find(job.task_id)
            if task is None or task.status in FINISHED:
                return False
            tasks.start(job.task_id)
            return True

    def _image_and_staging(self, job: ImportJob) -> tuple[Image, ImageStaging | None]:
        with self.db.session(write=False) as session:
            image = ImageRepository(session).find(job.image_id)
            if image is None:
                raise ImportAborted()
            return image, session.get(ImageStaging, job.image_id)

    def _locations(self, image_id: str) -> list[ImageLocation]:
        with self.db.session(write=False) as session:
            return ImageRepository(session).locations(image_id)

    def _report(self, job: ImportJob, message: str) -> bool:
        """Writes progress; False when the import should stop (image deleted, lock lost)."""
        with self.db.session() as session:
            if self._holds(ImageRepository(session), job) is None:
                return False
            return TaskRepository(session).report(job.task_id, message)

    def _holds(self, repo: ImageRepository, job: ImportJob) -> tuple[Image, dict[str, str]] | None:
        """The image and its properties, if the import still holds it."""
        image = repo.find(job.image_id)
        if image is None:
            return None
        properties = repo.load([image])[0].properties
        if properties.get(IMPORT_TASK) != job.task_id:
            return None
        return image, properties

    def _succeed(self, job: ImportJob, outcome: Outcome) -> bool:
        facts = outcome.facts
        assert facts is not None, "a successful import measured its data"
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            held = self._holds(repo, job)
            if held is None:
                return False
            image, properties = held
            if job.method != COPY_IMAGE and not repo.transition(
                image.id,
                from_=ImageStatus.IMPORTING,
                to=ImageStatus.ACTIVE,
                **facts.image_columns(),
            ):
                return False
            position = len(repo.locations(image.id))
            for offset, (store_id, url) in enumerate(outcome.written.items()):
                session.add(
                    ImageLocation(
                        image_id=image.id, store_id=store_id, url=url, position=position + offset
                    )
                )
            self._end_bookkeeping(session, repo, job, properties, outcome)
            TaskRepository(session).finish(
                job.task_id,
                TaskStatus.SUCCESS,
                message=f"Copied {facts.size // MIB} MiB",
                result={"image_id": image.id},
            )
        log.info("image %s imported (%s) into %s", job.image_id, job.method, ",".join(job.stores))
        return True

    def _fail(self, job: ImportJob, outcome: Outcome, message: str) -> None:
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            held = self._holds(repo, job)
            if held is not None:
                image, properties = held
                if job.method != COPY_IMAGE:
                    repo.transition(
                        image.id,
                        from_=ImageStatus.IMPORTING,
                        to=ImageStatus.QUEUED,
                        **CLEARED_DATA_FACTS,
                    )
                for store_id in job.stores:
                    outcome.failed.setdefault(store_id, message)
                self._end_bookkeeping(session, repo, job, properties, outcome)
            TaskRepository(session).finish(job.task_id, TaskStatus.FAILURE, message=message)
        log.warning("import of image %s (%s) failed: %s", job.image_id, job.method, message)

    def _end_bookkeeping(
        self,
        session: Any,
        repo: ImageRepository,
        job: ImportJob,
        properties: dict[str, str],
        outcome: Outcome,
    ) -> None:
        """The import lock released, the stores moved from `importing` to done or failed, and
        the staged data forgotten (its object removed by a job, unless it became the image's)."""
        shown = set(job.stores) if self.multistore else set()
        failed = set(outcome.failed) if self.multistore else set()
        repo.set_properties(
            job.image_id,
            {
                IMPORT_TASK: None,
                IMPORTING_TO: joined(store_list(properties.get(IMPORTING_TO)) - shown),
                FAILED_IMPORT: joined(store_list(properties.get(FAILED_IMPORT)) | failed),
            },
        )
        staged = (
            release_staged(session, job.image_id)
            if job.method == GLANCE_DIRECT
            else outcome.staged_download
        )
        if staged is not None and outcome.promoted is None:
            enqueue(session, DISCARD_UPLOAD_JOB, staged, lock=job.image_id)


def _staged_facts(staged: ImageStaging) -> IngestFacts:
    return IngestFacts(
        size=staged.size,
        checksum=staged.checksum,
        hash_algo=staged.os_hash_algo,
        hash_value=staged.os_hash_value,
        virtual_size=staged.virtual_size,
        detected_format=None,
        stored=(),
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
