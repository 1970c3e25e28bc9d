"""Every table of Glint, imported in one place so that the metadata is complete: what Alembic's
environment (alembic/env.py) compares the database with, and what tests create and empty.

It sits above the layers, like app.main: it imports the domain packages' models, which app.db (the
engine and the column types they use) must not do.
"""

from sqlmodel import SQLModel

from app.images.models import (
    Image,
    ImageLocation,
    ImageMember,
    ImageProperty,
    ImageStaging,
    ImageTag,
    ImageUpload,
)
from app.jobs.models import Job
from app.tasks.models import Task

metadata = SQLModel.metadata

__all__ = [
    "Image",
    "ImageLocation",
    "ImageMember",
    "ImageProperty",
    "ImageStaging",
    "ImageTag",
    "ImageUpload",
    "Job",
    "Task",
    "metadata",
]
