"""Log a dependency outage once, not once per request it fails.

The first failure is logged at WARNING; while failures go on, one summary line a minute
says how many requests it cost. The count per request is in the metrics (the 503s in
``http_server_request_duration_seconds``, ``db_client_errors_total``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    """``failed(what)`` for every failure; lines go out at most once per ``every`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._logged_at: float | None = None
        self._suppressed = 0

    def failed(self, message: str, *args: object) -> None:
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._every:
            self._suppressed += 1
            return
        if self._suppressed:
            self._log.warning(message + " (%d more since the last report)", *args, self._suppressed)
        else:
            self._log.warning(message, *args)
        self._logged_at = now
        self._suppressed = 0
