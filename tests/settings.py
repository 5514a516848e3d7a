"""Settings for tests: every process's in one object, and which process reads which variable.

Production code never holds ``Settings``: each process reads its own class from
``shared.config`` (the sandbox and the demo shop from their own packages).
"""

from __future__ import annotations

from demoshop.config import DemoShopConfig
from sandbox.config import SandboxEnv
from shared.config import (
    CheckoutSettings,
    EnvSettings,
    MigrationSettings,
    WebhookIngressSettings,
    WorkerSettings,
)


class Settings(WebhookIngressSettings, CheckoutSettings, WorkerSettings):
    """The webhook ingress's, the checkout's and the worker's settings together."""


# Every process and the class its settings come from, in the order the README's "read by"
# column names them. ``recon`` reads the worker's; the ``migrations`` are ``alembic upgrade``.
PROCESS_SETTINGS: dict[str, type[EnvSettings]] = {
    "webhooks": WebhookIngressSettings,
    "checkout": CheckoutSettings,
    "worker": WorkerSettings,
    "migrations": MigrationSettings,
    "sandbox": SandboxEnv,
    "demoshop": DemoShopConfig,
}


def readers() -> dict[str, list[str]]:
    """Each variable any process reads -> the processes that read it, in PROCESS_SETTINGS order."""
    found: dict[str, list[str]] = {}
    for process, settings_class in PROCESS_SETTINGS.items():
        for variable in settings_class.variables().values():
            found.setdefault(variable, []).append(process)
    return found
