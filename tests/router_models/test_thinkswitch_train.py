"""Training inputs: auxiliary targets from the data's optional fields."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from router_models.thinkswitch.data import read_records
from router_models.thinkswitch.train import aux_targets, aux_value

FIXTURE = Path(__file__).parents[1] / "fixtures" / "thinking_small.jsonl"


def test_aux_values_read_level_and_other_caps() -> None:
    records = read_records(FIXTURE)
    gsm = next(r for r in records if r.benchmark == "GSM8K" and 512 in r.by_cap)
    math_record = next(r for r in records if "level" in r.meta)
    assert aux_value(gsm, "long_pass@512") == gsm.by_cap[512][1].pass_rate
    assert aux_value(gsm, "short_pass@1024") == gsm.by_cap[1024][0].pass_rate
    assert math.isnan(aux_value(gsm, "level"))  # GSM8K lines carry no level
    assert aux_value(math_record, "level") == pytest.approx((math_record.meta["level"] - 1) / 4)
    assert math.isnan(aux_value(math_record, "long_pass@512"))
    with pytest.raises(ValueError, match="unknown auxiliary target"):
        aux_value(gsm, "long_pass@many")
    table = aux_targets(records, ["level", "long_pass@512"])
    assert table.shape == (len(records), 2)
    assert bool(((table >= 0) & (table <= 1) | torch.isnan(table)).all())

