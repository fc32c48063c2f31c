"""A warning that repeats on every request, logged at most once per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable


class ThrottledLog:
    """Logs a warning at most once every `every_s` seconds per key, saying how many were left out in between.

    The key is the message (its format string) unless the caller names one, such as the backend the warning is
    about: one failing backend's warnings then never hide another's. Keys are a bounded set (messages, backends).
    """

    def __init__(self, logger: logging.Logger, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def warning(self, message: str, *args: object, key: Hashable = None) -> None:
        key = message if key is None else (message, key)
        now = self.clock()
        if now - self._last.get(key, -float("inf")) < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        left_out = f" ({suppressed} similar warnings not logged)" if suppressed else ""
        self.logger.warning(message + "%s", *args, left_out)
        self._last[key] = now
