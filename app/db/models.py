"""Every table, imported in one place so that metadata is complete for Alembic and tests."""

from sqlmodel import SQLModel

from app.images.models import Image, ImageMember, ImageProperty, ImageTag

metadata = SQLModel.metadata

__all__ = ["Image", "ImageMember", "ImageProperty", "ImageTag", "metadata"]
