"""Router artifacts on disk: a directory with `model.safetensors` (weights) and `manifest.json`.

The manifest names the router kind, its candidates, the encoder it builds on, a version (a stable
hash of weights and manifest, used by the gateway in cache keys) and the model's config dataclass,
from which the loader rebuilds the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from router_models.configs import check_types
from router_models.errors import ArtifactError, InputError, loading_artifact

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class Manifest:
    kind: str
    candidates: list[str]
    encoder: str | None
    config: dict[str, Any]
    version: str = ""
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def content_version(manifest: Manifest, tensors: dict[str, torch.Tensor]) -> str:
    """A stable 16-hex-digit hash of what the artifact computes: kind, candidates, config, weights."""
    digest = hashlib.sha256()
    head = {k: v for k, v in manifest.to_json().items() if k != "version"}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(repr(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def save_artifact(directory: str | Path, manifest: Manifest, tensors: dict[str, torch.Tensor]) -> Manifest:
    """Write weights and manifest (with its version filled in); return the manifest written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    manifest = dataclasses.replace(manifest, version=content_version(manifest, tensors))
    save_file(tensors, str(directory / WEIGHTS))
    (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def read_manifest(directory: str | Path) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: not a router artifact (no {MANIFEST})")
    with loading_artifact(directory, "router"):
        data = json.loads(path.read_text())
        if "candidates" not in data:
            raise ArtifactError(f"{directory}: not a router artifact (kind {data.get('kind')!r})")
        if data.get("format") != FORMAT_VERSION:
            raise ArtifactError(f"{path}: unsupported artifact format {data.get('format')!r}")
        check_types(Manifest, data, "manifest")
        return Manifest(**data)


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / WEIGHTS))


def artifact_kind(directory: Path) -> str | None:
    """The kind named by the manifest in `directory` (router or switcher), or None where there is none."""
    try:
        kind = json.loads((directory / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def prepare_out(directory: str | Path, kind: str, force: bool = False) -> None:
    """Before training: make sure an artifact of `kind` can be written to `directory` (created if missing).
    A directory holding anything but an artifact of the same kind (or an interrupted run's `checkpoint/`) is
    refused unless `force`, so that a typo does not overwrite another artifact."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and not force and any(entry.name != "checkpoint" for entry in out.iterdir()):
        held = artifact_kind(out)
        if held != kind:
            what = f"a {held} artifact" if held else "files that are not an artifact"
            raise InputError(f"--out {out}: holds {what}; choose another directory or pass --force to write there")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: not writable")
