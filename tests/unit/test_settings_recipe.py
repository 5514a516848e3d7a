"""The recipe in CONTRIBUTING.md ("Adding a setting") is true.

A setting is one field of one settings class, declared where every process that reads it
inherits it, and one README row (``tests/unit/test_readme.py`` checks the rows). These tests
fail while a variable is declared twice, while an entrypoint loads another class than its
process's, or while the recipe names a file or class that does not exist.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ingress import __main__ as ingress_main
from scripts import run, services
from shared.config import EnvSettings, PayrailsTargetSettings
from tests.settings import PROCESS_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
# process -> the entrypoint file that loads its settings (the ingress apps: APP_SETTINGS)
ENTRYPOINTS = {
    "worker": ("worker/__main__.py", "worker/cli.py"),
    "migrations": ("migrations/env.py",),
    "sandbox": ("sandbox/config.py",),
    "demoshop": ("demoshop/__main__.py",),
}
SERVICE_PROCESSES = ("webhooks", "checkout", "worker")
# Not processes, but settings classes too: ``make run``'s, which must declare nothing new.
LAUNCHER_SETTINGS = (run.StackSettings, services.ServicesSettings)


def every_settings_class() -> list[type[EnvSettings]]:
    """EnvSettings and every subclass of it: the processes', their bases, ``make run``'s."""
    found: list[type[EnvSettings]] = []
    pending: list[type[EnvSettings]] = [EnvSettings]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def recipe() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    start = text.index("## Adding a setting")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_variable_is_declared_by_one_class_only() -> None:
    declared: dict[str, list[str]] = {}
    for cls in every_settings_class():
        own = set(inspect.get_annotations(cls)) & set(cls.model_fields)
        for name in own:
            declared.setdefault(cls.variables()[name], []).append(cls.__name__)
    twice = {variable: owners for variable, owners in declared.items() if len(owners) > 1}
    assert not twice, f"declare each once, in a class every reader inherits: {twice}"


def test_make_run_reads_only_what_the_processes_read() -> None:
    read = {v for cls in PROCESS_SETTINGS.values() for v in cls.variables().values()}
    for cls in LAUNCHER_SETTINGS:
        assert set(cls.variables().values()) <= read, cls.__name__


def test_the_ingress_entrypoint_loads_each_apps_own_class() -> None:
    assert {
        "webhooks": PROCESS_SETTINGS["webhooks"],
        "checkout": PROCESS_SETTINGS["checkout"],
    } == ingress_main.APP_SETTINGS


@pytest.mark.parametrize("process", ENTRYPOINTS)
def test_each_entrypoint_loads_its_process_class(process: str) -> None:
    name = PROCESS_SETTINGS[process].__name__
    for path in ENTRYPOINTS[process]:
        assert f"{name}.from_env(" in (ROOT / path).read_text(), path


@pytest.mark.parametrize("process", SERVICE_PROCESSES)
def test_a_process_that_holds_a_payrails_secret_applies_the_real_payrails_guard(
    process: str,
) -> None:
    settings_class = PROCESS_SETTINGS[process]
    assert settings_class.real_secrets()
    assert issubclass(settings_class, PayrailsTargetSettings)


@pytest.mark.parametrize("process", PROCESS_SETTINGS)
def test_each_process_starts_on_an_empty_environment(process: str) -> None:
    PROCESS_SETTINGS[process].from_env({})


def test_the_recipe_names_files_and_classes_that_exist() -> None:
    text = recipe()
    paths = set(re.findall(r"`([\w/.-]+\.(?:py|md|yaml))`", text))
    assert {"shared/config.py", "README.md", "tests/unit/test_readme.py"} <= paths
    assert not {p for p in paths if not (ROOT / p).exists()}
    classes = set(re.findall(r"`([A-Z]\w*(?:Settings|Config|Env|Secrets|Credentials))`", text))
    known = {cls.__name__ for cls in every_settings_class()}
    assert {PROCESS_SETTINGS[p].__name__ for p in SERVICE_PROCESSES} <= classes
    assert classes <= known, classes - known
