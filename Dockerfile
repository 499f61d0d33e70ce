# syntax=docker/dockerfile:1
# kiok in a container: `docker build -t kiok .` then `docker run -p 8080:8080 kiok` (a standalone),
# or compose.yaml for 3 masters + 2 workers with TLS. docs/deploy.md walks through both.
#
# Stage 1 builds kiok's wheel and the wheels of its dependencies; stage 2 installs them with no
# compiler, no pip cache and no source tree, and runs as the unprivileged user kiok (uid 10001).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kiok ./kiok
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
# util-linux (unshare) and passwd (useradd) are part of the Debian base image: task isolation
# needs them when the worker runs as root (see docs/deploy.md, "Task isolation in a container").
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels kiok \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/kiok --create-home \
      --shell /usr/sbin/nologin kiok
# Inside a container loopback reaches nothing: the admin, internal and status ports bind all
# addresses (put TLS in front of them, as compose.yaml does, on any network you do not trust).
ENV PYTHONUNBUFFERED=1 \
    KIOK_BASE_DATA_DIR=/var/lib/kiok \
    KIOK_MASTER_HOST=0.0.0.0 \
    KIOK_WORKER_HOST=0.0.0.0 \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
USER kiok
WORKDIR /var/lib/kiok
VOLUME ["/var/lib/kiok"]
# admin HTTP (API, UI, probes), internal protocol (workers), Raft (as in KIOK_MASTER_PEERS),
# worker status port
EXPOSE 8080 19999 7001 19998
# /healthz on a master or standalone; a worker sets HEALTHCHECK_URL to its status port's
# /health. An https URL is verified against KIOK_TLS_CA (the certificates from
# deploy/make-ca.sh name 127.0.0.1). Any answer but 2xx, or none within 3 s, is unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-c", "import os, ssl, urllib.request as r; url = os.environ['HEALTHCHECK_URL']; ca = os.environ.get('KIOK_TLS_CA') or None; r.urlopen(url, timeout=3, context=ssl.create_default_context(cafile=ca) if url.startswith('https:') else None)"]
ENTRYPOINT ["kiok"]
CMD ["standalone"]
