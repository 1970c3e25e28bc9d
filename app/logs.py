"""Logging: one set-up for every Glint process, and what each line is about.

Every line says which request (`x-openstack-request-id`) and image it belongs to, and, from the
background worker, which job: the edge middleware and the worker bind those to a context
variable, and a filter on the one handler copies them onto every record, so lines from the
domain, from libraries and from uvicorn get them too. Tasks and worker threads started while a
request runs inherit the binding (asyncio copies the context into tasks, anyio into threads).

`configure` sets up the current process; `dict_config` is the same set-up as a `dictConfig`
dictionary, for uvicorn to apply in each server process it starts. Two formats: `text`, one
readable line per record, and `json`, one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ACCESS_LOGGER = "glint.access"
# What an access line carries besides its message (`extra=`), named as in the JSON format.
ACCESS_FIELDS = ("method", "path", "status", "bytes", "duration_ms")


@dataclass(frozen=True, slots=True)
class LogContext:
    request_id: str | None = None
    image_id: str | None = None
    job: str | None = None
    job_id: int | None = None


_CONTEXT_FIELDS = ("request_id", "image_id", "job", "job_id")
_NOTHING = LogContext()
_context: ContextVar[LogContext] = ContextVar("glint_log_context", default=_NOTHING)


def current() -> LogContext:
    return _context.get()


def bind(
    *,
    request_id: str | None = None,
    image_id: str | None = None,
    job: str | None = None,
    job_id: int | None = None,
) -> Token[LogContext]:
    """Adds these (those not None) to the context of the lines logged from here on, in this
    task and what it starts; `unbind` with the token undoes it."""
    old = _context.get()
    return _context.set(
        LogContext(
            request_id=old.request_id if request_id is None else request_id,
            image_id=old.image_id if image_id is None else image_id,
            job=old.job if job is None else job,
            job_id=old.job_id if job_id is None else job_id,
        )
    )


def unbind(token: Token[LogContext]) -> None:
    _context.reset(token)


@contextmanager
def bound(
    *,
    request_id: str | None = None,
    image_id: str | None = None,
    job: str | None = None,
    job_id: int | None = None,
) -> Iterator[None]:
    token = bind(request_id=request_id, image_id=image_id, job=job, job_id=job_id)
    try:
        yield
    finally:
        unbind(token)


class ContextFilter(logging.Filter):
    """Puts the bound context on every record the handler sees (a value given with `extra=`
    wins); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in _CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name))
        return True


class TextFormatter(logging.Formatter):
    """`2026-01-02 03:04:05,678 INFO glint.access [req-1 image=ab job=image.delete_data#3]:
    message`; the brackets only when there is a context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(glint_context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if request_id := getattr(record, "request_id", None):
            parts.append(str(request_id))
        if image_id := getattr(record, "image_id", None):
            parts.append(f"image={image_id}")
        if job := getattr(record, "job", None):
            job_id = getattr(record, "job_id", None)
            parts.append(f"job={job}" if job_id is None else f"job={job}#{job_id}")
        record.glint_context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, image_id and
    process always; job and job_id from the worker; the ACCESS_FIELDS on access lines; the
    traceback as `exception`. Newlines inside values are escaped, so a line is a record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "image_id": getattr(record, "image_id", None),
            "process": record.process,
        }
        for name in ("job", "job_id"):
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class AlembicSetupFilter(logging.Filter):
    """Alembic announces its own set-up at INFO whenever migrations are checked (plugins set
    up, "Context impl SQLiteImpl.", "Will assume transactional DDL."): that is DEBUG here. What
    it does to the database ("Running upgrade a -> b") stays INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or (
            record.name == "alembic.runtime.migration" and record.getMessage().startswith("Run")
        ):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def dict_config(level: str, format: Literal["text", "json"]) -> dict[str, Any]:
    """The logging set-up as a `logging.config.dictConfig` dictionary: one handler on standard
    error that every logger (uvicorn's included) goes through."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "alembic_setup": {"()": AlembicSetupFilter},
        },
        "formatters": {"glint": {"()": JsonFormatter if format == "json" else TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "glint",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's default set-up gives these handlers (and colours) of their own.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Glint's access log (ACCESS_LOGGER) replaces uvicorn's.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "alembic.runtime.plugins": {"filters": ["alembic_setup"]},
            "alembic.runtime.migration": {"filters": ["alembic_setup"]},
            # SQL is logged when GLINT_DATABASE__ECHO says so, not at every debug level.
            "sqlalchemy": {"level": "WARNING"},
            # The HTTP store's client logs every request with its whole URL, query included
            # (a presigned URL's signature); the store logs what it does without those.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # botocore and swiftclient log request details (headers, signed URLs) at debug.
            "botocore": {"level": "WARNING"},
            "boto3": {"level": "WARNING"},
            "swiftclient": {"level": "WARNING"},
        },
    }


def configure(level: str, format: Literal["text", "json"]) -> None:
    """Sets up logging in this process (again, if it was: the last call wins)."""
    config = dict_config(level, format)
    # dictConfig adds a logger's filters to those it has: without this, each call would add one.
    for name, logger_config in config["loggers"].items():
        if "filters" in logger_config:
            logger = logging.getLogger(name)
            for stale in [f for f in logger.filters if isinstance(f, AlembicSetupFilter)]:
                logger.removeFilter(stale)
    logging.config.dictConfig(config)
