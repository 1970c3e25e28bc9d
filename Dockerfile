# Glint's container image: one image for every role (`glint serve`, `glint worker`, `glint db
# upgrade`; compose.yaml runs them all on PostgreSQL).
#   docker build -t glint .
#   docker run -p 9292:9292 -v glint-data:/var/lib/glint glint
# Settings come from the environment (GLINT_<GROUP>__<FIELD>) or a TOML file named by GLINT_CONFIG.
# Production: point GLINT_DATABASE__URL at PostgreSQL or MySQL and run `glint db upgrade` once.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/glint
WORKDIR /src
# Only what the package build reads (pyproject names README.md as the long description; setup.py
# puts app/ and the migrations in alembic/ into the wheel, the latter as app/migrations/).
COPY pyproject.toml README.md setup.py ./
COPY app ./app
COPY alembic ./alembic
# The README's install with the object-store drivers (a container usually stores in Swift or
# S3), not editable: the source tree stays behind in this stage.
RUN /opt/glint/bin/pip install '.[swift,s3]'

FROM python:3.11-slim
ENV PATH=/opt/glint/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GLINT_DATA_DIR=/var/lib/glint
RUN groupadd --system --gid 10001 glint \
    && useradd --system --uid 10001 --gid glint --home-dir /var/lib/glint --no-create-home \
        --shell /usr/sbin/nologin glint \
    && mkdir -p /var/lib/glint \
    && chown glint:glint /var/lib/glint
# Same base image as the builder, so the venv's interpreter path is valid here.
COPY --from=builder /opt/glint /opt/glint
USER glint:glint
WORKDIR /var/lib/glint
VOLUME ["/var/lib/glint"]
EXPOSE 9292
# python:3.11-slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9292/healthcheck', timeout=4)"]
CMD ["glint", "serve", "--host", "0.0.0.0", "--port", "9292"]
