"""A stand-in router and a gateway launcher using it, for benchmarks run before a router artifact exists.

    python -m bench.standin --config FILE --port P

Serves exactly like `switchyard serve` (same app, same uvicorn options) but every `lookahead` strategy
gets `StandInRouter` instead of loading the artifact at `router:`. The stand-in prefers the first
candidate; with a warm decision cache the router is never called, so it does not change what a
warm-cache benchmark measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CANDIDATES = ["sim-a", "sim-b"]


class StandInRouter:
    """Fixed scores: the first candidate is always the best."""

    kind = "standin"
    version = "standin-1"

    def __init__(self, candidates: list[str]) -> None:
        self.candidates = candidates
        self._row = np.linspace(0.9, 0.1, len(candidates), dtype=np.float32)

    def score(self, queries: list[str]) -> np.ndarray:
        return np.tile(self._row, (len(queries), 1))  # (N, len(candidates))


def load_standin(path: str) -> StandInRouter:
    return StandInRouter(CANDIDATES)


def main() -> int:
    from router_models.cli.arguments import port_number
    from service.app import create_app
    from service.commands.serve import serve_app
    from service.config import load_settings
    from service.gateway import Gateway

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway YAML config")
    parser.add_argument("--port", type=port_number, required=True, help="listen port")
    args = parser.parse_args()
    settings = load_settings(args.config)
    gateway = Gateway(settings, loaders={"router": load_standin})
    serve_app(create_app(settings, gateway=gateway), settings, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
