"""The decision cache: strategies remember what they decided for the same request content."""

from service.cache.base import DecisionCache
from service.cache.keys import decision_key
from service.cache.memory import MemoryCache
from service.cache.redis import RedisCache

__all__ = ["DecisionCache", "MemoryCache", "RedisCache", "decision_key"]
