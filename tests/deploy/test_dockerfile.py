"""The gateway image is multi-stage, runs unprivileged, and matches what the manifests expect."""

from __future__ import annotations

import shlex
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from .tools import K8S, ROOT, require_tool, run

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line.rstrip() for line in DOCKERFILE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [(op.upper(), args.strip()) for op, args in (text.split(None, 1) for text in joined.splitlines())]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    run(require_tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE))


def test_build_is_multi_stage_and_final_stage_copies_only_the_venv() -> None:
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) >= 2 and all(" AS " in f for f in froms)
    copies = [args for op, args in final_stage() if op == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    assert not [args for op, args in final_stage() if op == "RUN" and "pip install" in args]


def test_image_runs_as_the_user_the_deployment_expects() -> None:
    (user,) = [args for op, args in final_stage() if op == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0
    deployment = yaml.safe_load((K8S / "base" / "gateway" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    (container,) = pod["containers"]
    (expose,) = [args for op, args in final_stage() if op == "EXPOSE"]
    assert int(expose) == container["ports"][0]["containerPort"]
    (cmd,) = [args for op, args in final_stage() if op == "CMD"]
    assert yaml.safe_load(cmd) == container["args"], "docker run and the Deployment start the same server"


def test_dockerignore_admits_only_the_package_sources() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[0] == "*", "start from nothing, then admit what the build copies"
    admitted = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copied = {source for op, args in instructions() if op == "COPY" and "--from" not in args
              for source in shlex.split(args)[:-1]}
    assert copied <= admitted


@pytest.mark.slow
def test_build_context_yields_the_complete_package(tmp_path: Path) -> None:
    """What the image's build stage installs: a wheel built from only the files .dockerignore admits."""
    context = tmp_path / "context"
    context.mkdir()
    for source in {s for op, args in instructions() if op == "COPY" and "--from" not in args
                   for s in shlex.split(args)[:-1]}:
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, context / source)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(context))
    (wheel,) = tmp_path.glob("switchyard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in packaged if n.endswith("entry_points.txt"))
    sources = {p.relative_to(ROOT).as_posix() for package in ("service", "router_models")
               for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
    assert sources <= packaged, f"missing from the image: {sorted(sources - packaged)}"
    assert "switchyard = service.cli:main" in entry_points
