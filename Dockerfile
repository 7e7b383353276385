# The streamer service image (used by docker-compose.yml). Wheels bring librdkafka and libpq with them.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY streamer ./streamer
RUN pip install . && useradd --system --uid 10001 streamer
COPY models ./models

USER streamer
ENV STREAMER_MODELS_DIR=/app/models
CMD ["streamer", "run"]
