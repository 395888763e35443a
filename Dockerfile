# reviewbot: webhook server + worker in one container. Data (SQLite, WAL) lives on the /data volume.
#   docker build -t reviewbot .
#   docker run -p 8000:8000 -v reviewbot-data:/data --env-file reviewbot.env reviewbot
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reviewbot ./reviewbot
# reviewbot/builtin_rules is a link to the top-level rules/ packs: the wheel needs both.
COPY rules ./rules
# With the [postgres] extra: the same image runs on SQLite or on REVIEWBOT_DATABASE_URL.
RUN pip wheel --wheel-dir /wheels ".[postgres]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REVIEWBOT_DATABASE_PATH=/data/reviewbot.db \
    REVIEWBOT_HOST=0.0.0.0 \
    REVIEWBOT_PORT=8000
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin reviewbot \
    && mkdir -p /data && chown reviewbot:reviewbot /data
USER reviewbot
WORKDIR /data
VOLUME /data
EXPOSE 8000
# /healthz answers 200 when the database takes a write and a worker with accepted credentials
# heartbeats; 503 otherwise (docs/deploy.md). The App key must be readable by uid 10001.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REVIEWBOT_PORT', '8000'), timeout=4)"]
CMD ["reviewbot", "serve"]
