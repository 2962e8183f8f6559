# The all-in-one critic for a GPU node: the service with in-process vLLM (AsyncLLM), on top of the official vLLM
# image (vllm==0.33.0 with its CUDA torch). One container, no second server: simpler than vLLM + the lean critic,
# but one model per critic process and no sharing of the vLLM server between services.
#   docker build -f docker/critic-vllm.Dockerfile -t stepalign-critic-vllm .
#   docker run --gpus all --ipc host --network host -e STEPALIGN_HOST=127.0.0.1 -e STEPALIGN_API_KEYS=... \
#       -e STEPALIGN_TENSOR_PARALLEL_SIZE=2 -v hf-cache:/cache/huggingface stepalign-critic-vllm
# Build arguments: BASE (the vLLM image) and PIP_INSTALL_ARGS (--no-index: offline, from docker/wheels/critic).

ARG BASE=vllm/vllm-openai:v0.33.0
FROM ${BASE}
ARG PIP_INSTALL_ARGS=""
# The vLLM image's stack stays as it is; the critic's lock adds only what it lacks (docker/missing_pins.py), and
# pip check proves the two agree. The sources are bind-mounted, so no layer of the image keeps a copy of them.
RUN --mount=type=bind,source=.,target=/ctx \
    python3 /ctx/docker/missing_pins.py /ctx/requirements/critic.txt > /tmp/missing.txt \
    && python3 -m pip install --no-cache-dir --no-deps --find-links /ctx/docker/wheels/critic ${PIP_INSTALL_ARGS} \
        -r /tmp/missing.txt \
    && mkdir /tmp/src && cp -r /ctx/pyproject.toml /ctx/README.md /ctx/shared /ctx/critic_service /tmp/src/ \
    && python3 -m pip install --no-cache-dir --no-deps --no-index --no-build-isolation /tmp/src \
    && python3 -m pip check \
    && python3 -c "import critic_service.app, critic_service.engines.vllm_engine, vllm" \
    && rm -rf /tmp/src /tmp/missing.txt \
    && groupadd --system --gid 10001 stepalign \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/stepalign stepalign \
    && install -d -o stepalign -g stepalign /var/lib/stepalign /var/lib/stepalign/cache /cache /cache/huggingface
USER 10001:10001
WORKDIR /var/lib/stepalign
ENV HF_HOME=/cache/huggingface \
    PYTHONUNBUFFERED=1 \
    STEPALIGN_HOST=0.0.0.0 \
    STEPALIGN_PORT=8000 \
    STEPALIGN_MODEL=Qwen/QwQ-32B \
    STEPALIGN_CACHE_PATH=/var/lib/stepalign/cache/critiques.sqlite
# The model cache (~65 GB for QwQ-32B) and the critique cache outlive the container.
VOLUME ["/cache/huggingface", "/var/lib/stepalign/cache"]
EXPOSE 8000
# Readiness gates compose's depends_on; loading QwQ-32B takes minutes (downloading it, much longer the first time).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30m --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request as u; port = os.environ.get('STEPALIGN_PORT', '8000'); sys.exit(u.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status != 200)"]
ENTRYPOINT ["stepalign-critic", "serve"]
