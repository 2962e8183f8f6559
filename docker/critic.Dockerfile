# The critic service with vLLM on a CUDA GPU node (vllm==0.33.0 brings its own CUDA torch).
#   docker build -f docker/critic.Dockerfile -t stepalign-critic .
#   docker run --gpus all -p 8000:8000 -e STEPALIGN_API_KEYS=team-key -v ~/.cache/huggingface:/root/.cache/huggingface \
#       stepalign-critic --model Qwen/QwQ-32B --tensor-parallel-size 2
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY critic_service critic_service
COPY trainer trainer
RUN pip install --no-cache-dir ".[critic,vllm]"
EXPOSE 8000
ENTRYPOINT ["stepalign-critic", "serve", "--host", "0.0.0.0", "--port", "8000"]
