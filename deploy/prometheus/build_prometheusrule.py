"""Wrap the plain Prometheus rules file into the PrometheusRule object that kustomize deploys.

rules.yaml stays the single source (promtool checks and unit-tests it); this script writes
deploy/k8s/base/monitoring/prometheusrule.yaml from it, keeping its comments and layout.
Run it after editing rules.yaml; `--check` exits non-zero when the committed object is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yaml"
TARGET = HERE.parent / "k8s" / "base" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/prometheus/rules.yaml by deploy/prometheus/build_prometheusrule.py: edit those.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: switchyard
  labels:
    app.kubernetes.io/name: switchyard
spec:
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest whose `spec` is the rules file from its `groups:` key on."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the manifest is up to date")
    args = parser.parse_args()
    wanted = render(RULES.read_text())
    if args.check:
        if TARGET.read_text() != wanted:
            print(f"{TARGET} is stale: run python {Path(__file__).relative_to(Path.cwd())}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(wanted)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
