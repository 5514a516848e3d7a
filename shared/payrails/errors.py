"""Typed errors of the Payrails client: a Payrails error code, the HTTP status, retryable or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ReconError, TransientError


class PayrailsError(ReconError):
    """Payrails refused or failed a call; ``code`` is Payrails' own (``request.conflict``...)."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r})"


class PayrailsTransientError(PayrailsError, TransientError):
    """No usable answer after the bounded retries: connection error, timeout, 5xx or 429."""

    retryable = True


class PayrailsAuthError(PayrailsError):
    """The token endpoint refused our credentials, or a fresh token was refused again."""


def error_code(body: object) -> tuple[str | None, str | None]:
    """The first ``(code, detail)`` of Payrails' error envelope, or of an OAuth error body."""
    if not isinstance(body, Mapping):
        return None, None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first: Mapping[str, Any] = errors[0]
        code = first.get("code") or first.get("title")
        detail = first.get("detail")
        return (
            code if isinstance(code, str) else None,
            detail if isinstance(detail, str) else None,
        )
    oauth = body.get("error")
    description = body.get("error_description")
    return (
        oauth if isinstance(oauth, str) else None,
        description if isinstance(description, str) else None,
    )


def error_from_response(
    endpoint: str, status: int, body: object, *, retry_after: float | None = None
) -> PayrailsError:
    """The typed error for one non-2xx answer: 429 and 5xx are transient, the rest are not."""
    code, detail = error_code(body)
    message = f"payrails {endpoint} answered {status}" + (f" {code}" if code else "")
    if detail:
        message += f": {detail}"
    kind: type[PayrailsError]
    if status == 429 or status >= 500:
        kind = PayrailsTransientError
    elif status == 401:
        kind = PayrailsAuthError
    else:
        kind = PayrailsError
    return kind(message, code=code, status=status, retry_after=retry_after)
