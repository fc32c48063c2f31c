"""The gateway image is multi-stage, runs unprivileged, and matches what the manifests expect."""

from __future__ import annotations

import shlex

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
