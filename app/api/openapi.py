"""The committed OpenAPI document (openapi/v2.json), rendered from a whole app built with the
default settings; `glint openapi` prints it. The document itself is built by app.api.docs.

This module imports app.main; app.main imports app.api.docs, never this module.
"""

from __future__ import annotations

import json

from app.config import default_settings
from app.db.engine import Database
from app.main import create_app


def render_document() -> str:
    """The committed `openapi/v2.json`: stable text, independent of the environment."""
    app = create_app(default_settings(), database=Database("sqlite://"))
    return json.dumps(app.openapi(), indent=2) + "\n"
