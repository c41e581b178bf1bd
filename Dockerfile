# The daemon image. `docker compose up` runs it next to a Cassandra container (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Installed as a regular (non-editable) package; the sources are not needed afterwards. The image ships
# the service only: .dockerignore keeps daemon/tools (node manager, generator, loader) and bench out.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon ./daemon
COPY web ./web
COPY cql ./cql
RUN pip install . && rm -rf /src

# config.toml carries the documented defaults; override any key with PSS_<SECTION>_<KEY>.
WORKDIR /app
COPY config.toml ./
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pss
USER pss

# config.toml binds 127.0.0.1, which is unreachable from outside a container.
ENV PSS_SERVER_HOST=0.0.0.0
EXPOSE 8080

# The slim image has no curl; python's urllib fails (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PSS_SERVER_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["python", "-m", "daemon"]
CMD ["serve"]
