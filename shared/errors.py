"""The service's exception hierarchy; each boundary translates these exactly once."""

from __future__ import annotations


class ReconError(Exception):
    """Base class of every error the service raises on purpose."""


class ConfigError(ReconError):
    """A setting is missing or invalid; raised at start-up."""


class InvalidSignature(ReconError):
    """A webhook's X-Signature is missing, malformed or does not match."""


class InvalidPayload(ReconError):
    """A body or message cannot be parsed into what we expect."""


class TransientError(ReconError):
    """A failure worth retrying later: a dependency is down, slow or rate-limiting."""


class PublishError(TransientError):
    """The broker did not confirm a publish (returned, nacked, timed out or disconnected)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"publish failed: {reason}")
        self.reason = reason
