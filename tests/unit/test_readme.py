"""The README's configuration tables: every variable the settings classes read, and who reads it.

Names come from the classes' metadata (each field's environment variable), not from the source
text: a row per variable, and its "read by" column names exactly the processes whose settings
class declares it.
"""

from __future__ import annotations

from pathlib import Path

from tests.settings import PROCESS_SETTINGS, readers

ROOT = Path(__file__).resolve().parents[2]
HEADER = "| variable | read by | default | meaning |"


def configuration_section() -> list[str]:
    """The lines of README.md's "Configuration" section, up to its first subsection."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Configuration")
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("#"))
    return lines[start:end]


def readme_rows() -> list[tuple[str, str]]:
    """(variable, read by) of every row of the section's tables."""
    rows = [line for line in configuration_section() if line.startswith("| `")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return [(cell[0].strip("`"), cell[1]) for cell in cells]


def test_every_configuration_table_has_a_read_by_column() -> None:
    headers = [line for line in configuration_section() if line.startswith("| variable")]
    assert headers
    assert set(headers) == {HEADER}


def test_every_setting_has_one_readme_row() -> None:
    documented = [variable for variable, _ in readme_rows()]
    missing = readers().keys() - set(documented)
    assert not missing, f"add README rows for {sorted(missing)}"
    twice = {variable for variable in documented if documented.count(variable) > 1}
    assert not twice, f"one README row each for {sorted(twice)}"


def test_the_readme_documents_no_setting_the_code_does_not_read() -> None:
    extra = {variable for variable, _ in readme_rows()} - readers().keys()
    assert not extra, f"README rows for variables nobody reads: {sorted(extra)}"


def test_each_row_names_exactly_the_processes_whose_settings_declare_its_variable() -> None:
    code = readers()
    wrong = {
        variable: f"README says {read_by!r}, the classes say {', '.join(code[variable])!r}"
        for variable, read_by in readme_rows()
        if variable in code and read_by != ", ".join(code[variable])
    }
    assert not wrong, wrong


def test_the_read_by_column_names_only_known_processes() -> None:
    named = {p.strip() for _, read_by in readme_rows() for p in read_by.split(",")}
    assert named <= set(PROCESS_SETTINGS)
