"""The switcher artifact: a directory with `model.safetensors` (the head) and `manifest.json`.

The manifest holds the kind, the encoder name, a version hash of weights and config, the config dataclass
(the loader rebuilds the head from it), the recommended τ and what it was trained on. The encoder weights are
not copied: they come from the packaged MiniLM named in `encoder`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from router_models.artifact import MANIFEST, WEIGHTS
from router_models.configs import check_types
from router_models.errors import ArtifactError, loading_artifact
from router_models.thinkswitch.model import ThinkSwitchConfig, ThinkSwitchHead

KIND = "thinkswitch"
FORMAT_VERSION = 1  # of the switcher's manifest (not the routers'); those written before the field read as 1


def save_artifact(out: str | Path, head: ThinkSwitchHead, default_tau: float, extra: dict[str, Any]) -> str:
    """Write the head and its manifest into `out` (created if missing); returns the version hash."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in head.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    config = asdict(head.config)
    digest = hashlib.sha256((out / WEIGHTS).read_bytes())
    digest.update(json.dumps(config, sort_keys=True).encode())
    version = digest.hexdigest()[:12]
    manifest = {
        "kind": KIND,
        "format": FORMAT_VERSION,
        "encoder": head.config.encoder,
        "version": version,
        "config": config,
        "default_tau": default_tau,
        **extra,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return version


def read_manifest(path: str | Path) -> dict[str, Any]:
    if not (Path(path) / MANIFEST).is_file():
        raise ArtifactError(f"{path}: not a {KIND} artifact (no {MANIFEST})")
    with loading_artifact(path, KIND):
        manifest: dict[str, Any] = json.loads((Path(path) / MANIFEST).read_text())
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: not a {KIND} artifact (kind {kind!r})")
    if manifest.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported {KIND} artifact format {manifest['format']!r} "
                            f"(this version reads {FORMAT_VERSION})")
    for key, (ok, what) in MANIFEST_FIELDS.items():
        if key not in manifest and key in REQUIRED:
            raise ArtifactError(f"{path}: incomplete {KIND} artifact: its manifest has no {key!r}")
        if key in manifest and not ok(manifest[key]):
            raise ArtifactError(f"{path}: corrupt {KIND} artifact: manifest {key!r} is not {what}")
    return manifest


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _train_options(value: Any) -> bool:
    """What the loader and `eval` read of `train_options`: `short_retry` (a bool) and `cap` (the token cap)."""
    if not isinstance(value, dict):
        return False
    cap = value.get("cap")
    cap_ok = cap is None or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1)
    return cap_ok and isinstance(value.get("short_retry", False), bool)


# manifest key -> (check, what it must be); the REQUIRED ones every artifact has, the others where written
MANIFEST_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "version": (lambda value: isinstance(value, str), "a string"),
    "config": (lambda value: isinstance(value, dict), "an object"),
    "default_tau": (_number, "a finite number"),
    "taus": (lambda value: isinstance(value, dict) and all(map(_number, value.values())),
             "an object of finite numbers"),
    "train_options": (_train_options, "an object with a boolean short_retry and a cap of a positive integer or "
                      "null"),
    "trained_questions": (lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
                          "a list of strings"),
}
REQUIRED = ("version", "config", "default_tau")


def load_head(path: str | Path) -> tuple[ThinkSwitchHead, dict[str, Any]]:
    """Rebuild the head from the manifest's config and load its weights; returns (head, manifest)."""
    manifest = read_manifest(path)
    unknown = set(manifest["config"]) - {f.name for f in fields(ThinkSwitchConfig)}
    if unknown:
        raise ArtifactError(f"{path}: {KIND} config fields unknown to this version: {sorted(unknown)}")
    with loading_artifact(path, KIND):
        values = {"question_offset": True, **manifest["config"]}  # older checkpoints read it from the question
        check_types(ThinkSwitchConfig, values, "config")
        config = ThinkSwitchConfig(**values)
        head = ThinkSwitchHead(config)
        head.load_state_dict(load_file(str(Path(path) / WEIGHTS)))
    return head.eval(), manifest
