"""Typed errors from Payrails' answers."""

from __future__ import annotations

from shared.errors import TransientError
from shared.payrails.client import parse_retry_after
from shared.payrails.errors import (
    PayrailsAuthError,
    PayrailsError,
    PayrailsTransientError,
    error_from_response,
)


def envelope(code: str) -> dict[str, object]:
    return {"errors": [{"id": "e1", "code": code, "detail": "why"}]}


def test_rate_limit_and_server_errors_are_transient() -> None:
    limited = error_from_response("authorize", 429, envelope("request.rate-limit"), retry_after=2)
    down = error_from_response("authorize", 503, envelope("service.unavailable"))
    assert isinstance(limited, PayrailsTransientError)
    assert isinstance(down, TransientError)
    assert (limited.code, limited.status, limited.retry_after) == ("request.rate-limit", 429, 2)
    assert limited.retryable
    assert down.retryable


def test_client_errors_are_not_retryable() -> None:
    error = error_from_response("capture", 400, envelope("workflow.action.not-allowed"))
    assert type(error) is PayrailsError
    assert (error.code, error.status, error.retryable) == (
        "workflow.action.not-allowed",
        400,
        False,
    )


def test_oauth_error_body_is_read_for_its_code() -> None:
    error = error_from_response("token", 401, {"error": "invalid_client"})
    assert isinstance(error, PayrailsAuthError)
    assert error.code == "invalid_client"


def test_body_without_an_envelope_still_gives_a_typed_error() -> None:
    error = error_from_response("get_execution", 502, None)
    assert error.code is None
    assert error.status == 502


def test_retry_after_in_seconds_is_parsed_and_dates_are_ignored() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None
