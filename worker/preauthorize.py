"""The pre-authorize hook: fraud, inventory or any other check that may stop an authorize.

The authorize consumer asks the hook before it calls Payrails. A denial moves the order to
``payment_failed`` with the hook's reason and Payrails is never called. The composition root
loads the class PRE_AUTHORIZE_HOOK names (``package.module:ClassName``, built with no arguments)
once at start-up and passes the instance in; unset, every order is allowed.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shared.db.models import Order
from shared.errors import ConfigError

_HOOK_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


@dataclass(frozen=True, slots=True)
class Decision:
    """The hook's answer: allowed, or denied with a short reason stored on the order."""

    allowed: bool
    reason: str | None = None

    @classmethod
    def allow(cls) -> Decision:
        return cls(True)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(False, reason)


@runtime_checkable
class PreAuthorizeHook(Protocol):
    """Decides whether an order may be authorized. Must not change the order."""

    async def check(self, order: Order) -> Decision: ...


class AllowAll:
    """The default hook: every order may be authorized."""

    async def check(self, order: Order) -> Decision:
        return Decision.allow()


def load_hook(path: str) -> PreAuthorizeHook:
    """The hook PRE_AUTHORIZE_HOOK names, instantiated; AllowAll when empty; ConfigError if bad."""
    if not path:
        return AllowAll()
    if not _HOOK_PATH.match(path):
        raise ConfigError(
            f"PRE_AUTHORIZE_HOOK must look like package.module:ClassName, got {path!r}"
        )
    module_name, class_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"PRE_AUTHORIZE_HOOK: cannot import module {module_name!r}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ConfigError(f"PRE_AUTHORIZE_HOOK: {module_name!r} has no class {class_name!r}")
    try:
        hook = cls()
    except TypeError as exc:
        raise ConfigError(
            f"PRE_AUTHORIZE_HOOK: {path} must be constructible without arguments: {exc}"
        ) from exc
    if not isinstance(hook, PreAuthorizeHook) or not inspect.iscoroutinefunction(hook.check):
        raise ConfigError(f"PRE_AUTHORIZE_HOOK: {path} has no async check(order) method")
    return hook
