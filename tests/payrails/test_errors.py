"""Typed errors from Payrails' answers."""

from __future__ import annotations

import pytest

from shared.errors import TransientError
from shared.payrails.client import parse_retry_after
from shared.payrails.errors import (
    PayrailsAuthError,
    PayrailsError,
    PayrailsTransientError,
    error_from_response,
    is_definite_refusal,
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


def failed_action(result: str | None) -> dict[str, object]:
    error: dict[str, object] = {"id": "e1", "code": "workflow.action.failed", "detail": "failed"}
    if result is not None:
        error["reason"] = {"category": "Instrument", "result": result, "source": "Customer"}
    return {"errors": [error]}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, envelope("request.validation-error")),
        (400, envelope("request.param.invalid")),
        (404, envelope("request.not-found")),
        (422, envelope("request.malformed")),
        (422, failed_action("BlockedInstrument")),
        (401, {"error": "invalid_client"}),
        (403, envelope("request.forbidden")),
        (400, None),
    ],
)
def test_a_refusal_before_anything_happened_is_definite(status: int, body: object) -> None:
    assert is_definite_refusal(error_from_response("authorize", status, body))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, envelope("workflow.action.not-allowed")),  # may be authorized already
        (409, envelope("request.conflict")),
        (408, envelope("request.timeout")),
        (499, envelope("request.canceled")),
        (422, failed_action("ProviderTimeout")),
        (422, failed_action("Unknown")),
        (422, failed_action("Pending")),
        (422, failed_action(None)),  # the action ran and failed somewhere we cannot see
        (410, envelope("request.gone")),  # a status nobody documented
        (429, envelope("request.rate-limit")),
        (503, envelope("service.unavailable")),
    ],
)
def test_an_answer_that_leaves_the_outcome_open_is_not_definite(status: int, body: object) -> None:
    assert not is_definite_refusal(error_from_response("authorize", status, body))


def test_an_error_without_a_status_is_not_definite() -> None:
    assert not is_definite_refusal(PayrailsError("token response has no access_token"))


def test_the_operation_results_of_every_error_are_kept() -> None:
    body = {
        "errors": [
            {"code": "workflow.action.failed", "reason": {"result": "GenericRejection"}},
            {"code": "workflow.action.failed", "reason": {"result": "Timeout"}},
            {"code": "workflow.action.failed", "reason": "not an object"},
        ]
    }
    error = error_from_response("authorize", 422, body)
    assert error.results == ("GenericRejection", "Timeout")
    assert not is_definite_refusal(error)
