"""Configuration of every strategy, as one discriminated union keyed by `kind`.

A public model's `strategy:` block is validated into exactly one of these. Each strategy module owns
its config class; this module only gathers them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from service.strategies.direct import DirectConfig
from service.strategies.fusion.config import FusionConfig
from service.strategies.lookahead import LookaheadConfig
from service.strategies.thinkswitch import ThinkSwitchConfig

StrategyConfig = Annotated[DirectConfig | LookaheadConfig | ThinkSwitchConfig | FusionConfig,
                           Field(discriminator="kind")]
