"""Wall-clock ISO 8601 UTC timestamps for hot paths: the date and time of day are formatted once
per second, and the whole text once per unit of its last digit, not once per call."""

from __future__ import annotations

import time


class UtcIsoClock:
    """``now()`` as ``YYYY-MM-DDTHH:MM:SS.<fraction><suffix>``, the fraction truncated as
    ``datetime.isoformat`` truncates it."""

    def __init__(self, fraction_digits: int, suffix: str) -> None:
        self._scale = 10**fraction_digits
        self._template = f"{{}}.{{:0{fraction_digits}d}}{suffix}"
        self._units = -1
        self._second = -1
        self._prefix = ""
        self._text = ""

    def now(self) -> str:
        units = int(time.time() * self._scale)
        if units != self._units:  # at the ingress's rate, a millisecond holds several requests
            self._units = units
            second, fraction = divmod(units, self._scale)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._text = self._template.format(self._prefix, fraction)
        return self._text
