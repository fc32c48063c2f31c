"""A warning that repeats on every request, logged at most once per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    """Logs a warning at most once every `every_s` seconds, saying how many were left out in between."""

    def __init__(self, logger: logging.Logger, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self.clock()
        if now - self._last < self.every_s:
            self._suppressed += 1
            return
        left_out = f" ({self._suppressed} similar warnings not logged)" if self._suppressed else ""
        self.logger.warning(message + "%s", *args, left_out)
        self._last, self._suppressed = now, 0
