# syntax=docker/dockerfile:1
# Build stage: compile the release binaries: the server, and the client that its
# `submit`, `status`, `list`, ... subcommands run (found beside it).
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package ffmpeg-worker-server --package ffmpeg-worker-client --bins

# Runtime stage: Debian slim with ffmpeg, running as a non-root user.
FROM debian:bookworm-slim
# Debian's stable suite only ships security fixes; pinning exact versions would break the build
# on every point release, so the package versions are left to the suite.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ffmpeg-worker \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin ffmpeg-worker \
    && mkdir -p /data /var/lib/ffmpeg-worker \
    && chown ffmpeg-worker:ffmpeg-worker /data /var/lib/ffmpeg-worker
COPY --from=builder /src/target/release/ffmpeg-worker /src/target/release/ffmpeg-worker-client /usr/local/bin/

ENV DATA_PATH=/data \
    DATABASE_URL=sqlite:///var/lib/ffmpeg-worker/ffmpeg-worker.db \
    HOST=0.0.0.0 \
    PORT=8000 \
    FFMPEG_TIMEOUT=3600 \
    WORKER_CONCURRENCY=1 \
    LOG_FORMAT=json

VOLUME ["/data", "/var/lib/ffmpeg-worker"]
EXPOSE 8000
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ffmpeg-worker"]
CMD ["serve"]
