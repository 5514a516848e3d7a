"""The hot-path UTC clock formats exactly as datetime.isoformat does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.clock import UtcIsoClock


@pytest.mark.parametrize(
    ("digits", "suffix", "timespec"), [(3, "+00:00", "milliseconds"), (6, "Z", "microseconds")]
)
def test_the_clock_formats_like_datetime_isoformat(
    monkeypatch: pytest.MonkeyPatch, digits: int, suffix: str, timespec: str
) -> None:
    clock = UtcIsoClock(digits, suffix)
    for now in (1764446979.25, 1764446979.5, 1764446980.125, 1764450000.0):  # a second apart too
        monkeypatch.setattr("shared.clock.time.time", lambda now=now: now)
        expected = datetime.fromtimestamp(now, UTC).isoformat(timespec=timespec)
        assert clock.now() == expected.replace("+00:00", suffix)
