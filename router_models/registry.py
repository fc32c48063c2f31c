"""Router kinds by name, and `load_router`: what the gateway calls to get a ready router."""

from __future__ import annotations

from pathlib import Path

from router_models.artifact import read_manifest, read_weights
from router_models.base import Router
from router_models.baselines import BestSingleRouter, KnnRouter, RandomRouter
from router_models.configs import check_types
from router_models.encoder import set_threads
from router_models.errors import loading_artifact
from router_models.lookahead.router import LookaheadRouter, MlcRouter

ROUTERS: dict[str, type[Router]] = {
    cls.kind: cls for cls in (LookaheadRouter, MlcRouter, KnnRouter, BestSingleRouter, RandomRouter)
}


def router_class(kind: str) -> type[Router]:
    if kind == "lookahead_causal":
        from router_models.lookahead.causal_router import CausalLookaheadRouter

        return CausalLookaheadRouter
    if kind not in ROUTERS:
        raise ValueError(f"unknown router kind {kind!r}; known: {sorted([*ROUTERS, 'lookahead_causal'])}")
    return ROUTERS[kind]


def load_router(path: str | Path, threads: int | None = None) -> Router:
    """Rebuild a saved router from its directory, offline. `threads` pins torch's intra-op threads
    (default: all cores, at most 4), so inference latency does not depend on who else set them."""
    set_threads(threads)
    manifest = read_manifest(path)
    with loading_artifact(path, "router"):
        cls = router_class(manifest.kind)
        check_types(cls.config_class, manifest.config, "config")
        config = cls.config_class(**manifest.config)
        if manifest.kind == "lookahead_causal":  # also reads the tokenizer saved beside the weights
            router = cls.load(path, manifest.candidates, config, read_weights(path))  # type: ignore[attr-defined]
        else:
            router = cls.from_tensors(manifest.candidates, config, read_weights(path))
    router.version = manifest.version
    return router
