# syntax=docker/dockerfile:1
# Spillover's image. `docker run -p 4000:4000 IMAGE` starts the embedded demo (mock providers,
# a simulated pool, SQLite) reachable from the host; `docker run -v $PWD/spillover.yaml:/etc/
# spillover/spillover.yaml -p 4000:4000 IMAGE serve` runs your config. State (the SQLite
# ledger and its journal) lives in /var/lib/spillover, a volume owned by the runtime user.
#
# BASE: any Debian bookworm image with Python 3.11 as `python3` and the venv module; pin it
# by digest in your registry (python:3.11-slim-bookworm@sha256:…). The container test builds
# one locally with debootstrap when no registry is reachable.
# TARGET: `runtime` (the request path only) or `full` (+ litellm's long-tail providers and
# the cost-report charts).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/spillover
COPY requirements-build.lock requirements-runtime.lock requirements-full.lock /tmp/
RUN /opt/spillover/bin/pip install --require-hashes --no-deps -r /tmp/requirements-build.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies ./policies
COPY fallback_engine ./fallback_engine
COPY config ./config

FROM build AS build-runtime
RUN /opt/spillover/bin/pip install --require-hashes --no-deps -r /tmp/requirements-runtime.lock \
 && /opt/spillover/bin/pip install --no-deps --no-build-isolation . \
 && /opt/spillover/bin/pip uninstall --yes pip setuptools wheel \
 && find /opt/spillover -name __pycache__ -prune -exec rm -rf {} +

FROM build AS build-full
RUN /opt/spillover/bin/pip install --require-hashes --no-deps -r /tmp/requirements-full.lock \
 && /opt/spillover/bin/pip install --no-deps --no-build-isolation . \
 && /opt/spillover/bin/pip uninstall --yes pip setuptools wheel \
 && find /opt/spillover -name __pycache__ -prune -exec rm -rf {} +

# The run stage: the venv only, as an unprivileged user, state in one volume.
FROM ${BASE} AS run
RUN groupadd --system --gid 10001 spillover \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin spillover \
 && mkdir -p /etc/spillover /var/lib/spillover \
 && chown 10001:10001 /var/lib/spillover
ENV PATH=/opt/spillover/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SPILLOVER_HOST=0.0.0.0 SPILLOVER_PORT=4000 SPILLOVER_CONFIG=/etc/spillover/spillover.yaml
WORKDIR /var/lib/spillover
VOLUME /var/lib/spillover
USER 10001:10001
EXPOSE 4000
# Follows the port the gateway listens on (SPILLOVER_PORT); ready means every route can serve
# and the ledger can keep rows.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["spillover", "health", "--ready"]
ENTRYPOINT ["spillover"]
CMD ["demo"]

FROM run AS full
COPY --from=build-full /opt/spillover /opt/spillover

FROM run AS runtime
COPY --from=build-runtime /opt/spillover /opt/spillover
# litellm's price map and tiktoken encodings, read as data (gateway/bundled.py): prices and
# token counts stay exact without litellm on the request path.
ARG SITE=/opt/spillover/lib/python3.11/site-packages/litellm
COPY --from=build-full ${SITE}/model_prices_and_context_window_backup.json /opt/spillover/share/
COPY --from=build-full ${SITE}/litellm_core_utils/tokenizers /opt/spillover/share/tokenizers
ENV SPILLOVER_DATA_DIR=/opt/spillover/share
