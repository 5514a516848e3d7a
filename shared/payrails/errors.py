"""Typed errors of the Payrails client: a Payrails error code, the HTTP status, retryable or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ReconError, TransientError
from shared.payrails.models import UNKNOWN_RESULTS

# 4xx answers Payrails gives to a request it refused as a whole, before acting on it (Payrails'
# error-codes page): malformed or invalid (400), our credentials (401, 403), an execution or
# instrument it does not know (404), a body it cannot process (422).
REFUSAL_STATUSES = frozenset({400, 401, 403, 404, 422})
# Codes that do not prove the request was not acted on: it timed out (``request.timeout``, to be
# retried with the same key), was cut off (``request.canceled``), clashed with the resource's
# state or with a request in flight (``request.conflict``), the action is not allowed in the
# execution's current state, which may be because it was done already
# (``workflow.action.not-allowed``), or Payrails itself failed.
INCONCLUSIVE_CODES = frozenset(
    {
        "request.timeout",
        "request.canceled",
        "request.conflict",
        "workflow.action.not-allowed",
        "internal",
        "service.unavailable",
    }
)
# A workflow action that ran and failed: conclusive only with a decline result in ``reason``.
ACTION_FAILED = "workflow.action.failed"
# Operation results that are no decline: money may have moved (payrails-api-facts 2.6).
OPEN_RESULTS = UNKNOWN_RESULTS | {
    "Success",
    "Accepted",
    "Pending",
    "HTTPRedirectRequired",
    "FormRedirectRequired",
}


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
        results: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.results = results  # the operation results (``reason.result``) the errors carry

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


def error_results(body: object) -> tuple[str, ...]:
    """Every ``errors[].reason.result`` of Payrails' envelope (``InsufficientBalance``...)."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, list):
        return ()
    results: list[str] = []
    for item in errors:
        reason = item.get("reason") if isinstance(item, Mapping) else None
        result = reason.get("result") if isinstance(reason, Mapping) else None
        if isinstance(result, str) and result:
            results.append(result)
    return tuple(results)


def is_definite_refusal(error: PayrailsError) -> bool:
    """True when the answer proves Payrails did not act on the request: no money moved.

    Only a refusal status (``REFUSAL_STATUSES``), with no code that leaves the request's fate
    open (``INCONCLUSIVE_CODES``) and no result that is not a decline (the unknown family
    ``Unknown``, ``Timeout``, ``ProviderTimeout``..., or a success or pending result).
    ``workflow.action.failed`` says the action ran: it is conclusive only when its
    ``reason.result`` names a decline. Anything else (408, 409, 499, a transient
    failure, a status this list does not know) is not proof, so the caller must not treat it
    as a failed payment.
    """
    if error.retryable or error.status not in REFUSAL_STATUSES:
        return False
    if error.code in INCONCLUSIVE_CODES:
        return False
    if any(result in OPEN_RESULTS for result in error.results):
        return False
    return error.code != ACTION_FAILED or bool(error.results)


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
    return kind(
        message,
        code=code,
        status=status,
        retry_after=retry_after,
        results=error_results(body),
    )
