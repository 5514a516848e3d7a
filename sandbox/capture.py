"""Capture modes: Payrails captures at once after authorization unless told otherwise.

Payrails' default is instant capture ("payments are automatically captured after authorization,
without any delay"); a workflow can capture after a delay or leave it to the merchant. The
sandbox takes the mode from its run's setting (``SANDBOX_CAPTURE_MODE``) and lets one execution
override it the documented way, ``workflowConfigOverride.captureMode`` (``Instant``, ``Delayed``
with ``captureDelay``, or ``manual``) on create.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sandbox.errors import invalid

CaptureMode = Literal["instant", "delayed", "manual"]
CAPTURE_MODES: tuple[CaptureMode, ...] = ("instant", "delayed", "manual")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?\Z"
)


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """How one execution is captured: automatically (after ``delay_seconds``) or by the merchant."""

    mode: CaptureMode
    delay_seconds: float = 0.0

    @property
    def automatic(self) -> bool:
        return self.mode != "manual"

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "delaySeconds": self.delay_seconds}


def parse_mode(raw: object) -> CaptureMode:
    """``Instant`` / ``Delayed`` / ``manual`` in any case; ValueError otherwise."""
    text = raw.lower() if isinstance(raw, str) else ""
    for mode in CAPTURE_MODES:
        if text == mode:
            return mode
    raise ValueError(f"captureMode must be one of Instant, Delayed, manual (got {raw!r})")


def parse_duration(raw: object) -> float:
    """An ISO-8601 duration such as ``PT30M`` in seconds; ValueError otherwise."""
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None or raw in ("P", "PT"):
        raise ValueError(f"captureDelay must be an ISO-8601 duration such as PT1H (got {raw!r})")
    days, hours, minutes = (int(match.group(g) or 0) for g in ("d", "h", "m"))
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + float(match.group("s") or 0)


def policy_override(body: Mapping[str, object]) -> CapturePolicy | None:
    """The create body's ``workflowConfigOverride`` capture settings; None when it has none."""
    override = body.get("workflowConfigOverride")
    if override is None:
        return None
    if not isinstance(override, Mapping):
        raise invalid("workflowConfigOverride must be an object")
    if "captureMode" not in override:
        return None
    try:
        mode = parse_mode(override["captureMode"])
        delay = parse_duration(override["captureDelay"]) if "captureDelay" in override else 0.0
    except ValueError as exc:
        raise invalid(f"workflowConfigOverride: {exc}") from exc
    return CapturePolicy(mode, delay if mode == "delayed" else 0.0)
