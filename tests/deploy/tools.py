"""Locating the external tools the deploy tests drive, and rendering the manifests with them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def require_tool(name: str) -> str:
    """Path of a command-line tool, on PATH or beside this interpreter (a venv's bin/).

    A missing tool fails the test loudly rather than skipping it: `make services` installs them.
    """
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: run `make services` (it runs deploy/install-tools.sh)",
                    pytrace=False)
    return found


def run(*args: str) -> str:
    """Run a tool and return its stdout; on failure, fail the test showing its output."""
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        command = " ".join(args)
        pytest.fail(f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done.stdout


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` renders from a kustomization directory."""
    output = run(require_tool("kubectl"), "kustomize", str(directory))
    return [doc for doc in yaml.safe_load_all(output) if doc]
