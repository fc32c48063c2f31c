"""Shared fixtures: the committed routing sample and configs small enough for a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from router_models.data import RoutingTable, load_table
from router_models.lookahead.config import LookaheadConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def sample_path() -> Path:
    return FIXTURES / "routing_sample.jsonl"


@pytest.fixture
def sim_path() -> Path:
    return FIXTURES / "routing_sim.jsonl"


@pytest.fixture(scope="session")
def sample_table() -> RoutingTable:
    return load_table([FIXTURES / "routing_sample.jsonl"])


@pytest.fixture
def tiny_config() -> LookaheadConfig:
    return LookaheadConfig(
        block_size=3,
        max_query_tokens=16,
        batch_size=8,
        max_train_queries=16,
        max_val_queries=8,
        eval_every=1,
        checkpoint_every=1,
        epochs=1.0,
    )
