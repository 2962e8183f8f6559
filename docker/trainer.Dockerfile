# The training client (TRL 1.16, transformers <5.20): shared/, trainer/ and configs/, no service code. Separate
# from the critic images: vllm 0.33 pins another torch. The default lock is PyPI's CUDA torch for GPU nodes.
#   docker build -f docker/trainer.Dockerfile -t stepalign-trainer .                      # GPU (CUDA torch)
#   docker build -f docker/trainer.Dockerfile --build-arg LOCK=trainer-cpu -t stepalign-trainer:cpu .
#   docker run --gpus all --network host -e STEPALIGN_API_KEY=... -v runs:/work/runs -v data:/work/data \
#       stepalign-trainer train --config configs/paper/stepalign.yaml --critic-url http://127.0.0.1:8000
#   multi-GPU: --entrypoint accelerate ... launch --config_file configs/accelerate/ddp.yaml -m trainer.cli train ...
# Build arguments: BASE (any image with Python 3.11+, or a plain Debian bookworm), LOCK (trainer-gpu or
# trainer-cpu: requirements/LOCK.txt) and PIP_INSTALL_ARGS (--no-index: offline, from docker/wheels/LOCK).

ARG BASE=python:3.11-slim
ARG LOCK=trainer-gpu

# The lock and its wheels (docker/wheels/LOCK: filled by make test-deploy, else empty and pip uses the index), in a
# stage of their own so that the dependencies' layer depends on them only.
FROM scratch AS lock
ARG LOCK
COPY requirements/${LOCK}.txt /lock.txt
COPY docker/wheels/${LOCK} /wheels/

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
    && install -d -o stepalign -g stepalign /work /work/runs /work/data /cache /cache/huggingface
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

FROM runtime AS deps
ARG LOCK
ARG PIP_INSTALL_ARGS=""
RUN --mount=type=bind,from=lock,target=/lock \
    python3 -m venv /opt/venv \
    && pip install --no-cache-dir --no-deps --find-links /lock/wheels ${PIP_INSTALL_ARGS} -r /lock/lock.txt \
    && python -c "import sys, torch; gpu = '${LOCK}' == 'trainer-gpu'; sys.exit(None if gpu == bool(torch.version.cuda) \
        else 'requirements/${LOCK}.txt gave the wrong torch build: ' + torch.__version__)"

# Only the trainer's half of the code: shared/ and trainer/ (critic_service/ is absent from the context).
FROM deps AS wheel
COPY pyproject.toml README.md /src/
COPY shared /src/shared
COPY trainer /src/trainer
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist /src

# The dependencies' layer (GBs) changes only with the lock; a code change rebuilds only the wheel's small layer.
FROM runtime
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    pip install --no-cache-dir --no-deps --no-index /dist/stepalign-*.whl \
    && pip check \
    && python -c "import trainer.cli, trainer.train, trainer.toy.tiny_model"
COPY configs /work/configs
USER 10001:10001
# Relative paths in configs/paper/*.yaml (data/..., runs/...) resolve here; mount data/ and runs/ as volumes.
WORKDIR /work
ENV HF_HOME=/cache/huggingface \
    TRL_EXPERIMENTAL_SILENCE=1
VOLUME ["/cache/huggingface"]
# A batch job, not a server: nothing to probe. Its progress is its log and runs/*/metrics.jsonl, and what watches
# it (compose's exit code, a Kubernetes Job) sees it finish or fail.
HEALTHCHECK NONE
# Python ignores SIGTERM when it runs as PID 1 without a handler; SIGINT always reaches it (KeyboardInterrupt), so
# `docker stop` ends a run at once. `stepalign-train train --resume` continues from the last checkpoint.
STOPSIGNAL SIGINT
ENTRYPOINT ["stepalign-train"]
CMD ["--help"]
