# syntax=docker/dockerfile:1
# The Switchyard gateway image: `docker build -t switchyard:0.1.0 .`
# Stage 1 builds a virtual environment with the gateway and its CPU-only model dependencies;
# stage 2 copies just that environment onto a clean slim Python and runs it as an unprivileged user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# The CPU build of torch: the default wheel on Linux drags in several GB of CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY router_models ./router_models
# Installs this project itself; its dependencies are pinned by pyproject.toml.
# hadolint ignore=DL3013
RUN pip install '.[models]' \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} +

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="OpenAI-compatible routing and ensembling gateway for vLLM" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid switchyard --no-create-home --home-dir /nonexistent switchyard
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["switchyard"]
CMD ["serve", "--config", "/etc/switchyard/config.yaml", "--host", "0.0.0.0", "--port", "8000"]
