"""Typed application keys of the sandbox app."""

from __future__ import annotations

from aiohttp import web

from sandbox.engine import PaymentEngine
from sandbox.idempotency import IdempotencyStore
from sandbox.state import SandboxState
from sandbox.webhooks import WebhookDispatcher

STATE = web.AppKey("sandbox_state", SandboxState)
IDEMPOTENCY = web.AppKey("sandbox_idempotency", IdempotencyStore)
WEBHOOKS = web.AppKey("sandbox_webhooks", WebhookDispatcher)
ENGINE = web.AppKey("sandbox_engine", PaymentEngine)
