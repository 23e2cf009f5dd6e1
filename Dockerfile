# vaar for reviewers: R + lavaan + semTools from Debian, vaar in a virtualenv, installed by the
# same scripts/setup.sh that CI and `make` use. Two stages: the builder compiles rpy2 against R;
# the final stage copies the virtualenv and adds only what it needs to run (no compilers).
# BASE: any Debian bookworm image (`make image-test` builds from a locally made one).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS builder
ENV VAAR_VENV=/opt/vaar/venv \
    PIP_NO_CACHE_DIR=1
WORKDIR /opt/vaar/src
COPY . .
RUN bash scripts/setup.sh \
    && /opt/vaar/venv/bin/python -m compileall -q vaar

FROM ${BASE}
ENV VAAR_VENV=/opt/vaar/venv \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/vaar /opt/vaar
RUN bash /opt/vaar/src/scripts/setup.sh --runtime \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 vaar \
    && mkdir -p /work && chown vaar /work
ENV PATH=/opt/vaar/venv/bin:$PATH
USER 10001
WORKDIR /work
EXPOSE 8080
# For `serve` on the default port (the image has no curl): healthy once an R worker is ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import json, urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/api/health', timeout=4); raise SystemExit(json.load(r)['status'] != 'ok')"]
ENTRYPOINT ["vaar"]
CMD ["--help"]
