"""Every table, imported in one place so that metadata is complete for Alembic and tests."""

from sqlmodel import SQLModel

from app.images.models import (
    Image,
    ImageLocation,
    ImageMember,
    ImageProperty,
    ImageTag,
    ImageUpload,
)
from app.jobs.models import Job

metadata = SQLModel.metadata

__all__ = [
    "Image",
    "ImageLocation",
    "ImageMember",
    "ImageProperty",
    "ImageTag",
    "ImageUpload",
    "Job",
    "metadata",
]
