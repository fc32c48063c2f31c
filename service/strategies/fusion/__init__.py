"""Cool-Fusion: several member backends, whatever their vocabularies, write one answer together."""

from service.strategies.fusion.config import FusionConfig
from service.strategies.fusion.strategy import FusionStrategy

__all__ = ["FusionConfig", "FusionStrategy"]
