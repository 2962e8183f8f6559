# The training client on its own GPUs (TRL 1.16, transformers <5.20); separate from the critic image because
# vllm 0.33 pins a different torch.
#   docker build -f docker/trainer.Dockerfile -t stepalign-trainer .
#   docker run --gpus all -e STEPALIGN_API_KEY=team-key stepalign-trainer \
#       train --config configs/paper/stepalign.yaml --critic-url http://critic:8000
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY critic_service critic_service
COPY trainer trainer
COPY configs configs
RUN pip install --no-cache-dir ".[train]"
ENTRYPOINT ["stepalign-train"]
