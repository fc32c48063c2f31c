"""Every router kind fits, saves, loads (through the gateway's entry point) and scores."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from router_models import load_router
from router_models.baselines import BestSingleConfig, BestSingleRouter, KnnConfig, RandomConfig, RandomRouter
from router_models.data import RoutingTable
from router_models.errors import ArtifactError
from router_models.lookahead.config import LookaheadConfig
from router_models.registry import ROUTERS

QUERIES = ["What is 17 * 23? Put the answer in \\boxed{}.", "Write a haiku about autumn.", "def f(x):"]


def fit(kind: str, table: RoutingTable, tiny: LookaheadConfig, workdir: Path):  # noqa: ANN201
    cls = ROUTERS[kind]
    config = {"lookahead": tiny, "mlc": tiny, "knn": KnnConfig(k=5, max_query_tokens=32)}.get(kind)
    return cls.fit(table, config or cls.config_class(), val=table.subset(range(8)), workdir=workdir)


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_fit_save_load_score(
    kind: str, sample_table: RoutingTable, tiny_config: LookaheadConfig, tmp_path: Path
) -> None:
    router = fit(kind, sample_table, tiny_config, tmp_path / "work")
    scores = router.score(QUERIES)
    assert scores.shape == (3, 5) and np.isfinite(scores).all()
    manifest = router.save(tmp_path / "artifact")
    written = json.loads((tmp_path / "artifact" / "manifest.json").read_text())
    assert written["kind"] == kind and written["candidates"] == sample_table.candidates
    assert written["version"] == manifest.version and len(manifest.version) == 16
    assert set(written["config"]) == {f.name for f in dataclasses.fields(router.config_class)}

    loaded = load_router(tmp_path / "artifact", threads=1)
    assert (loaded.kind, loaded.candidates, loaded.version) == (
        kind,
        sample_table.candidates,
        manifest.version,
    )
    np.testing.assert_allclose(loaded.score(QUERIES), scores, rtol=1e-4, atol=1e-4)
    assert loaded.score([]).shape == (0, 5)


def test_best_single_prefers_the_best_training_mean(sample_table: RoutingTable) -> None:
    router = BestSingleRouter.fit(sample_table, BestSingleConfig())
    best = int(np.argmax(sample_table.normalised.mean(axis=0)))
    assert set(router.choose(QUERIES)) == {sample_table.candidates[best]}


def test_random_is_repeatable_per_query_and_varies_across_queries(sample_table: RoutingTable) -> None:
    router = RandomRouter.fit(sample_table, RandomConfig(seed=1))
    np.testing.assert_array_equal(router.score(QUERIES), router.score(QUERIES))
    assert len({tuple(row) for row in router.score(sample_table.prompts)}) == len(set(sample_table.prompts))


def test_knn_returns_its_neighbours_scores(sample_table: RoutingTable) -> None:
    router = ROUTERS["knn"].fit(sample_table, KnnConfig(k=1, max_query_tokens=64))
    np.testing.assert_allclose(router.score(sample_table.prompts[:4]), sample_table.normalised[:4], atol=1e-5)


def test_version_changes_with_the_weights(sample_table: RoutingTable, tmp_path: Path) -> None:
    a = BestSingleRouter.fit(sample_table, BestSingleConfig())
    b = BestSingleRouter.fit(sample_table.subset(range(10)), BestSingleConfig())
    assert a.save(tmp_path / "a").version == a.save(tmp_path / "a2").version
    assert a.save(tmp_path / "a").version != b.save(tmp_path / "b").version


def test_loading_something_else_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a router artifact"):
        load_router(tmp_path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"k": "5"}, "config: k must be an integer, got '5'"),
        ({"k": 0}, "k must be at least 1, got 0"),
        ({"k": -3}, "k must be at least 1, got -3"),
    ],
)
def test_a_manifest_config_of_the_wrong_type_or_range_fails_clearly(
    config: dict[str, object], message: str, tmp_path: Path
) -> None:
    from router_models.artifact import Manifest, save_artifact

    manifest = Manifest("knn", ["a", "b"], "all-MiniLM-L6-v2", {**dataclasses.asdict(KnnConfig()), **config})
    save_artifact(tmp_path, manifest, {"keys": torch.zeros(2, 384), "values": torch.zeros(2, 2)})
    with pytest.raises(ArtifactError) as error:
        load_router(tmp_path)
    assert str(error.value) == f"{tmp_path}: cannot load this router artifact: {message}"
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest.to_json(), "candidates": "ab"}))
    with pytest.raises(ArtifactError, match="manifest: candidates must be a list of strings, got 'ab'"):
        load_router(tmp_path)
