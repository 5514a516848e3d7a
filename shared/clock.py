"""Wall-clock ISO 8601 UTC timestamps for hot paths: the date and time of day formatted once per
second, not once per call."""

from __future__ import annotations

import time


class UtcIsoClock:
    """``now()`` as ``YYYY-MM-DDTHH:MM:SS.<fraction><suffix>``, the fraction truncated as
    ``datetime.isoformat`` truncates it."""

    def __init__(self, fraction_digits: int, suffix: str) -> None:
        self._scale = 10**fraction_digits
        self._template = f"{{}}.{{:0{fraction_digits}d}}{suffix}"
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._template.format(self._prefix, int((now - second) * self._scale))
