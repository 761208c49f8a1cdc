# syntax=docker/dockerfile:1
# Keyway container image: `keyway serve` (Granian) on port 8080 as an unprivileged user.
#   docker build -t keyway:local .
#   docker run --rm -p 8080:8080 -v "$PWD/examples/keyway.yaml:/etc/keyway/keyway.yaml:ro" \
#     -e REDIS_URL=redis://host.docker.internal:6379/0 keyway:local

# ---- builder: install the locked dependencies (constraints.txt, made by .ci/lock) and install Keyway into a self-contained venv ----
FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/keyway

# Dependency manifests first, sources last: editing code does not invalidate the layer cache
# of anything above this point.
COPY constraints.txt constraints.txt
COPY pyproject.toml README.md ./
# gateway/lua is a symlink to ../lua: both trees are needed for the wheel to carry the scripts.
COPY lua/ lua/
COPY gateway/ gateway/
RUN /opt/keyway/bin/pip install . \
    && /opt/keyway/bin/python -c "import gateway, importlib.resources as r; assert any(p.name.endswith('.lua') for p in r.files('gateway').joinpath('lua').iterdir())"

# ---- runtime: slim base, no build tools, no package caches ----
FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="keyway" \
      org.opencontainers.image.description="LLM API gateway: one OpenAI/Anthropic endpoint over many upstream keys, coordinated in Redis" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed UID/GID so Kubernetes runAsUser/fsGroup and volume permissions are predictable.
ARG KEYWAY_UID=10001
RUN groupadd --system --gid "${KEYWAY_UID}" keyway \
    && useradd --system --uid "${KEYWAY_UID}" --gid keyway --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin keyway \
    && mkdir -p /etc/keyway

COPY --from=builder /opt/keyway /opt/keyway
COPY deploy/docker/healthcheck.py /usr/local/lib/keyway/healthcheck.py

ENV PATH=/opt/keyway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEYWAY_LOG_FORMAT=json \
    KEYWAY_HOST=0.0.0.0 \
    KEYWAY_PORT=8080 \
    SHUTDOWN_TIMEOUT_SECONDS=600

WORKDIR /tmp
USER ${KEYWAY_UID}:${KEYWAY_UID}
# 8080: the API. 9090: the admin API, /docs and /metrics when KEYWAY_ADMIN_PORT=9090 (the Helm
# chart and compose.yaml set it; unset, they share 8080).
EXPOSE 8080 9090

# Keyway drains on SIGTERM: readiness turns red, in-flight requests and streams finish
# within SHUTDOWN_TIMEOUT_SECONDS. Give `docker stop` a matching --time.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/keyway/healthcheck.py", "/livez"]

ENTRYPOINT ["keyway"]
CMD ["serve", "--config", "/etc/keyway/keyway.yaml"]
