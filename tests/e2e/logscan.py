"""Scan log files for what must never be written: secrets, tokens, signatures, card numbers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.luhn import luhn_ok

# 13-19 digits, optionally grouped by single spaces or dashes, standing alone (not part of a
# longer number, a decimal or a hex identifier).
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z.])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z.])")
# The shape of an HMAC-SHA256 in standard base64: 43 characters and one '='.
_WINDOW_RUN = re.compile(r"[A-Za-z0-9+/_-]{43}")
_WINDOWS = re.compile(r"(?=([A-Za-z0-9+/_-]{43}))")
_DIGEST_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])")
_BEARER = re.compile(r"(?i)\bbearer\s+(?!\[REDACTED\])([A-Za-z0-9._~+/=-]{8,})")
_SIGNATURE_FIELD = re.compile(r"(?i)x[-_]?signature[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9+/]{43}=)")
_API_KEY_FIELD = re.compile(
    r"(?i)x[-_]api[-_]key[\"']?\s*[:=]\s*[\"']?(?!\[REDACTED\])([^\s\"',}]{4,})"
)
MIN_NEEDLE = 8


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


@dataclass
class ScanResult:
    files: int = 0
    lines: int = 0
    findings: tuple[Finding, ...] = ()


def card_numbers(line: str) -> list[str]:
    """Luhn-valid 13-19 digit runs in ``line`` (a PAN's shape)."""
    found = []
    for match in _DIGIT_RUN.finditer(line):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(digits)
    return found


class Needles:
    """Exact forbidden values by kind, matched fast however many there are.

    A value holding 43 base64 characters in a row (every HMAC-SHA256 signature, padded or not,
    alone or inside a variant such as ``sha256=...``, and the sandbox's access tokens) is keyed
    by those 43 characters and looked up from every 43-character window of each line, so it is
    found embedded too; the few other values (secrets, card numbers) go into one alternation.
    """

    def __init__(self, needles: Mapping[str, Iterable[str]]) -> None:
        self._windows: dict[str, str] = {}
        others: dict[str, str] = {}
        for kind, values in needles.items():
            for value in (v.strip() for v in values):
                if len(value) < MIN_NEEDLE:
                    continue
                inner = _WINDOW_RUN.search(value)
                if inner is not None:  # a signature or token, alone or inside a variant
                    self._windows[inner.group(0)] = kind
                else:
                    others[value] = kind
        self._others = others
        ordered = sorted(others, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def kinds(self, line: str) -> set[str]:
        found = {
            self._windows[m.group(1)]
            for m in _WINDOWS.finditer(line)
            if m.group(1) in self._windows
        }
        if self._pattern is not None:
            found.update(self._others[m.group(0)] for m in self._pattern.finditer(line))
        return found


def scan_line(line: str, needles: Needles) -> list[str]:
    """The kinds of forbidden content in one line."""
    kinds = sorted(needles.kinds(line))
    if card_numbers(line):
        kinds.append("card_number")
    if _BEARER.search(line):
        kinds.append("bearer_token")
    if _SIGNATURE_FIELD.search(line):
        kinds.append("signature_header")
    if _DIGEST_B64.search(line):
        kinds.append("digest_shaped_value")
    if _API_KEY_FIELD.search(line):
        kinds.append("api_key_header")
    return kinds


def scan_files(paths: Iterable[Path], needles: Mapping[str, Iterable[str]]) -> ScanResult:
    """Scan every line of every file; findings name the file, line and kind, never the value."""
    matcher = Needles(needles)
    result = ScanResult()
    findings: list[Finding] = []
    for path in paths:
        result.files += 1
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                result.lines += 1
                findings.extend(Finding(path.name, number, k) for k in scan_line(line, matcher))
    result.findings = tuple(findings)
    return result
