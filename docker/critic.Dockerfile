# The lean critic: the service with the checker and OpenAI-compatible engines, no torch. It sits in front of a
# vLLM server (the official vllm/vllm-openai image; docker/compose.yaml, docker/k8s/) or runs the checker engine.
#   docker build -f docker/critic.Dockerfile -t stepalign-critic .
#   docker run --network host -e STEPALIGN_HOST=127.0.0.1 stepalign-critic            # checker engine
#   docker run --network host -e STEPALIGN_HOST=127.0.0.1 -e STEPALIGN_ENGINE=openai \
#       -e STEPALIGN_OPENAI_BASE_URL=http://127.0.0.1:8001/v1 -e STEPALIGN_MODEL=Qwen/QwQ-32B stepalign-critic
# Every setting is a STEPALIGN_* variable (critic_service/settings.py); docs/deploy.md has the whole story.
# Build arguments: BASE, any image with Python 3.11+ or a plain Debian bookworm (python3 is then installed from
# Debian); PIP_INSTALL_ARGS, e.g. --no-index for an offline build from docker/wheels/critic (make test-deploy).

ARG BASE=python:3.11-slim

FROM ${BASE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# The same instruction in every Dockerfile: images built on one base share this layer.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --system --gid 10001 stepalign \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/stepalign stepalign \
    && install -d -o stepalign -g stepalign /var/lib/stepalign /var/lib/stepalign/cache
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

FROM runtime AS deps
ARG PIP_INSTALL_ARGS=""
# The pins come from the lock (a subset of requirements/cpu.txt); wheels from docker/wheels/critic when present.
RUN --mount=type=bind,source=docker/wheels/critic,target=/wheels \
    --mount=type=bind,source=requirements/critic.txt,target=/tmp/critic.txt \
    python3 -m venv /opt/venv \
    && pip install --no-cache-dir --no-deps --find-links /wheels ${PIP_INSTALL_ARGS} -r /tmp/critic.txt

# Only the critic's half of the code: shared/ and critic_service/ (trainer/ is absent from the context).
FROM deps AS wheel
COPY pyproject.toml README.md /src/
COPY shared /src/shared
COPY critic_service /src/critic_service
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist /src

# The dependencies' layer changes only with the lock; a code change rebuilds only the small layer of the wheel.
FROM runtime
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    pip install --no-cache-dir --no-deps --no-index /dist/stepalign-*.whl \
    && pip check \
    && python -c "import critic_service.app, critic_service.engines.openai_engine, critic_service.engines.checker"
USER 10001:10001
WORKDIR /var/lib/stepalign
# Containers bind every interface by default; compose and the Kubernetes manifests set the address they want.
# The critique cache is the service's only state: a volume, so a restart (or an upgrade that keeps the prompt
# version) does not pay for the same critiques twice.
ENV STEPALIGN_HOST=0.0.0.0 \
    STEPALIGN_PORT=8000 \
    STEPALIGN_CACHE_PATH=/var/lib/stepalign/cache/critiques.sqlite
VOLUME ["/var/lib/stepalign/cache"]
EXPOSE 8000
# Readiness, not liveness: Docker's health status gates `depends_on: condition: service_healthy` (the trainer
# waits for a loaded engine). Kubernetes ignores HEALTHCHECK and probes /healthz and /readyz itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('STEPALIGN_PORT', '8000'); sys.exit(u.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status != 200)"]
# Exec form: the server is PID 1 and receives docker stop's SIGTERM itself (uvicorn then shuts down gracefully).
ENTRYPOINT ["stepalign-critic", "serve"]
