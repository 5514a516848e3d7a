"""Everything the sandbox remembers, in memory: tokens, instruments, executions, counters."""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandbox.cards import Instrument
from sandbox.config import SandboxConfig
from sandbox.executions import SandboxExecution
from sandbox.faults import FaultInjector

SDK_TOKEN_TTL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class SdkSession:
    holder_reference: str
    expires_at: float


@dataclass(slots=True)
class Stats:
    """Counters the control API reports; tests read them to prove writes happened once."""

    tokens_issued: int = 0
    executions_created: int = 0
    instruments_tokenized: int = 0
    authorizes: Counter[str] = field(default_factory=Counter)
    # Every authorize that reached the engine under a new idempotency key, allowed or refused:
    # a second one for an execution is a second attempt, even if the sandbox refused it.
    authorize_attempts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    idempotent_replays: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "tokensIssued": self.tokens_issued,
            "executionsCreated": self.executions_created,
            "instrumentsTokenized": self.instruments_tokenized,
            "authorizesExecuted": dict(self.authorizes),
            "authorizeAttempts": dict(self.authorize_attempts),
            "actionsExecuted": dict(self.actions),
            "idempotentReplays": self.idempotent_replays,
            "requests": dict(self.requests),
            "faultsInjected": dict(self.faults),
        }


class SandboxState:
    """The sandbox's memory; ``config`` is swapped whole when the control API changes it."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rng = random.Random(config.random_seed)
        self.faults = FaultInjector(config.faults, self.rng)
        self.stats = Stats()
        self.executions: dict[str, SandboxExecution] = {}
        self.instruments: dict[str, Instrument] = {}
        self._tokens: dict[str, float] = {}
        self._sdk_sessions: dict[str, SdkSession] = {}

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = time.monotonic() + self.config.token_ttl_seconds
        self.stats.tokens_issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        expires_at = self._tokens.get(token)
        return expires_at is not None and time.monotonic() < expires_at

    def expire_tokens(self) -> int:
        """Make every issued token stale at once (as a credential rotation would)."""
        count = len(self._tokens)
        self._tokens.clear()
        return count

    def open_sdk_session(self, holder_reference: str) -> str:
        token = secrets.token_urlsafe(24)
        expires_at = time.monotonic() + SDK_TOKEN_TTL_SECONDS
        self._sdk_sessions[token] = SdkSession(holder_reference, expires_at)
        return token

    def sdk_session(self, token: str) -> SdkSession | None:
        session = self._sdk_sessions.get(token)
        if session is None or time.monotonic() >= session.expires_at:
            return None
        return session
