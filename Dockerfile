# syntax=docker/dockerfile:1
# Build: install the hashed runtime lock into a venv, then the project without its deps.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/spillover
COPY requirements-runtime.lock /tmp/
RUN /opt/spillover/bin/pip install --require-hashes --no-deps -r /tmp/requirements-runtime.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies ./policies
COPY fallback_engine ./fallback_engine
COPY config ./config
RUN /opt/spillover/bin/pip install --no-deps . && rm -rf /src

# Run: the venv only, as an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin spillover \
 && mkdir -p /etc/spillover
COPY --from=build /opt/spillover /opt/spillover
ENV PATH=/opt/spillover/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
USER 10001:10001
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/health/ready', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["spillover", "serve", "--config", "/etc/spillover/spillover.yaml"]
# Bind every interface inside the container; override with your own flags.
CMD ["--host", "0.0.0.0", "--port", "4000"]
