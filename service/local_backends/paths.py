"""Where local backends keep their files: one cache directory, overridable by flag or environment."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "SWITCHYARD_CACHE"


@dataclass(frozen=True)
class CacheDir:
    """Layout of the cache: `vllm-venv/`, `models/NAME/`, `vllm-cache/`, `run/*.pid`, `logs/*.log`."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "vllm-venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def compile_cache(self) -> Path:
        """vLLM's own cache (torch.compile artifacts), kept here so `down` + `up` starts warm."""
        return self.root / "vllm-cache"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def model_dir(self, name: str) -> Path:
        return self.models / name

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        for directory in (self.root, self.models, self.run, self.logs, self.compile_cache):
            directory.mkdir(parents=True, exist_ok=True)


def resolve_cache_dir(override: str | os.PathLike[str] | None = None) -> CacheDir:
    """The cache directory: the explicit override, else `$SWITCHYARD_CACHE`, else `~/.cache/switchyard`.
    A path that is a file raises `NotADirectoryError` (which every command reports in one line)."""
    chosen = override or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "switchyard"
    root = Path(chosen).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a cache directory", str(root))
    return CacheDir(root)
