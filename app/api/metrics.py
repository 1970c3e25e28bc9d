"""`GET /metrics`: Prometheus' text format, for every server process of this Glint together
(see app/metrics.py). Not part of the Glance API, so not in the OpenAPI document; installed only
when metrics are on (404 otherwise)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.metrics import PrometheusMetrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain function: Starlette runs it in a worker thread, and the job gauge asks the
    # database.
    exposition: PrometheusMetrics = request.app.state.metrics
    body, content_type = exposition.render()
    return Response(body, media_type=content_type)
