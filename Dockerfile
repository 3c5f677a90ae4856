# mstream service image: the REST API and dashboard on 8719, state under /data.
# The API binds 0.0.0.0, so it always needs a token: pass MSTREAM_API_TOKEN, or read the
# token mstream generates for the run (and the dashboard URL with it) in `docker logs`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MSTREAM_API_HOST=0.0.0.0 \
    MSTREAM_API_PORT=8719 \
    MSTREAM_DATA_DIR=/data \
    MSTREAM_KEY_FILE=/data/mstream.key \
    MSTREAM_LOG=info

WORKDIR /app
COPY setup.py pyproject.toml README.md ./
COPY mstream ./mstream
COPY operators ./operators
COPY ui ./ui
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --system --uid 10001 mstream \
    && mkdir -p /data && chown mstream /data
USER mstream
VOLUME ["/data"]
EXPOSE 8719
ENTRYPOINT ["mstream"]
CMD ["--config", "/app/mstream-config.toml"]
