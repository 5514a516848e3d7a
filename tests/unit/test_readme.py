"""The README's configuration table lists every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ_BY = ("shared/config.py", "sandbox/config.py", "demoshop/config.py")


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in READ_BY:
        names |= set(re.findall(r'"((?:[A-Z][A-Z0-9]*_)+[A-Z0-9]+)"', (ROOT / path).read_text()))
    return names


def variables_in_the_readme_tables() -> set[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    rows = (line for line in lines if line.startswith("| `"))
    return {m for row in rows for m in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_has_a_readme_row() -> None:
    missing = variables_read_by_the_code() - variables_in_the_readme_tables()
    assert not missing, f"add README rows for {sorted(missing)}"


def test_the_readme_documents_no_setting_the_code_does_not_read() -> None:
    extra = variables_in_the_readme_tables() - variables_read_by_the_code()
    assert not extra, f"README rows for variables nobody reads: {sorted(extra)}"
