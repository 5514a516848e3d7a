"""Execution.from_api: both status shapes, the latest status by time, the 3-D Secure URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.payrails.models import Execution, ExecutionOutcome

START = datetime(2026, 1, 1, tzinfo=UTC)
CHALLENGE_URL = "https://pay.example/3ds/1"


def statuses(*codes: str) -> list[dict[str, str]]:
    """Status entries one second apart, in the order given."""
    return [
        {"code": code, "time": (START + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
        for i, code in enumerate(codes)
    ]


def body(*codes: str, **extra: Any) -> dict[str, Any]:
    return {"id": "ex-1", "merchantReference": "order-1", "status": statuses(*codes), **extra}


HISTORIES = [
    ("created",),
    ("created", "authorizeRequested"),
    ("created", "authorizeRequested", "authorizeSuccessful"),
    ("created", "authorizeRequested", "authorizeFailed"),
    ("created", "authorizeRequested", "authorizeFailed", "authorizePending"),
    ("created", "authorizeRequested", "authorizePending"),
    ("created", "authorizeRequested", "authorizePending", "authorizeSuccessful"),
    ("created", "authorizeRequested", "authorizeFailed", "authorizeRequested"),
    ("created", "authorizeRequested", "authorizeSuccessful", "captureRequested"),
    # A retry after a decline: the new attempt's own statuses decide.
    ("created", "authorizeRequested", "authorizeFailed", "authorizeRequested", "authorizePending"),
    (
        "created",
        "authorizeRequested",
        "authorizeFailed",
        "authorizeRequested",
        "authorizeSuccessful",
    ),
    ("created", "authorizeRequested", "authorizeFailed", "authorizeRequested", "authorizeFailed"),
    (
        "created",
        "authorizeRequested",
        "authorizeFailed",
        "authorizePending",
        "authorizeRequested",
        "authorizePending",
    ),
    (
        "created",
        "authorizeRequested",
        "authorizeFailed",
        "authorizePending",
        "authorizeRequested",
        "authorizeFailed",
        "authorizePending",
    ),
]
# The histories above without their leading "created": one or more authorize attempts.
ATTEMPTS = [history[1:] for history in HISTORIES if history[1:2] == ("authorizeRequested",)]
DECLINED_ATTEMPTS = [
    ("authorizeRequested", "authorizeFailed"),
    ("authorizeRequested", "authorizeFailed", "authorizePending"),
]


@given(history=st.sampled_from(HISTORIES), data=st.data())
def test_status_order_in_the_array_never_changes_the_reading(
    history: tuple[str, ...], data: st.DataObject
) -> None:
    ordered = body(*history, requiredAction={"type": "redirect", "href": CHALLENGE_URL})
    shuffled = dict(ordered, status=data.draw(st.permutations(ordered["status"])))
    a, b = Execution.from_api(ordered), Execution.from_api(shuffled)
    assert (a.outcome, a.latest_code, a.threeds_url) == (b.outcome, b.latest_code, b.threeds_url)
    assert a.statuses == b.statuses


@given(
    attempt=st.sampled_from(ATTEMPTS),
    declined=st.lists(st.sampled_from(DECLINED_ATTEMPTS), min_size=1, max_size=3),
    data=st.data(),
)
def test_declined_attempts_before_a_retry_never_change_the_retry_reading(
    attempt: tuple[str, ...], declined: list[tuple[str, ...]], data: st.DataObject
) -> None:
    action = {"requiredAction": {"type": "redirect", "href": CHALLENGE_URL}}
    alone = Execution.from_api(body("created", *attempt, **action))
    earlier = [code for codes in declined for code in codes]
    retried = body("created", *earlier, *attempt, **action)
    shuffled = dict(retried, status=data.draw(st.permutations(retried["status"])))
    after = Execution.from_api(shuffled)
    assert (after.outcome, after.latest_code, after.threeds_url) == (
        alone.outcome,
        alone.latest_code,
        alone.threeds_url,
    )


def test_trailing_authorize_pending_after_a_decline_is_still_a_failure() -> None:
    execution = Execution.from_api(
        body("created", "authorizeRequested", "authorizeFailed", "authorizePending")
    )
    assert execution.outcome is ExecutionOutcome.FAILED
    assert execution.latest_code == "authorizePending"


def test_new_authorize_after_a_decline_is_pending_again() -> None:
    execution = Execution.from_api(
        body("created", "authorizeRequested", "authorizeFailed", "authorizeRequested")
    )
    assert execution.outcome is ExecutionOutcome.PENDING


def test_retry_after_a_decline_that_meets_a_challenge_asks_for_the_challenge() -> None:
    execution = Execution.from_api(
        body(
            "created",
            "authorizeRequested",
            "authorizeFailed",
            "authorizeRequested",
            "authorizePending",
            requiredAction={"type": "redirect", "href": CHALLENGE_URL},
        )
    )
    assert execution.outcome is ExecutionOutcome.ACTION_REQUIRED
    assert execution.threeds_url == CHALLENGE_URL
    assert not execution.is_terminal


@pytest.mark.parametrize(
    ("retry", "outcome"),
    [
        (("authorizeRequested",), ExecutionOutcome.PENDING),
        (("authorizeRequested", "authorizeSuccessful"), ExecutionOutcome.SUCCEEDED),
        (("authorizeRequested", "authorizeFailed"), ExecutionOutcome.FAILED),
        (("authorizeRequested", "authorizeFailed", "authorizePending"), ExecutionOutcome.FAILED),
    ],
)
def test_retry_after_a_decline_is_decided_by_its_own_statuses(
    retry: tuple[str, ...], outcome: ExecutionOutcome
) -> None:
    declined = ("created", "authorizeRequested", "authorizeFailed", "authorizePending")
    execution = Execution.from_api(body(*declined, *retry))
    assert execution.outcome is outcome


def test_consumer_wait_is_never_used_as_the_challenge_url() -> None:
    execution = Execution.from_api(
        body(
            "created",
            "authorizeRequested",
            "authorizePending",
            links={"consumerWait": "https://pay.example/wait/1"},
        )
    )
    assert execution.threeds_url is None
    assert execution.outcome is ExecutionOutcome.PENDING


def test_required_action_href_wins_over_redirect_and_legacy_links() -> None:
    execution = Execution.from_api(
        body(
            "created",
            "authorizeRequested",
            "authorizePending",
            requiredAction={"type": "redirect", "href": CHALLENGE_URL},
            links={"redirect": "https://other/2", "3ds": "https://legacy/3", "consumerWait": "x"},
        )
    )
    assert execution.outcome is ExecutionOutcome.ACTION_REQUIRED
    assert execution.threeds_url == CHALLENGE_URL


def test_legacy_3ds_link_is_used_when_nothing_else_is_there() -> None:
    execution = Execution.from_api(
        body("created", "authorizePending", links={"3ds": "https://legacy/3"})
    )
    assert execution.threeds_url == "https://legacy/3"


@pytest.mark.parametrize(
    "links", [{"redirect": "https://pay.example/r"}, {"3ds": "https://pay.example/r"}]
)
def test_empty_required_action_href_falls_back_to_the_links(links: dict[str, str]) -> None:
    execution = Execution.from_api(
        body(
            "created",
            "authorizeRequested",
            "authorizePending",
            requiredAction={"type": "redirect", "href": ""},
            links=links,
        )
    )
    assert execution.outcome is ExecutionOutcome.ACTION_REQUIRED
    assert execution.threeds_url == "https://pay.example/r"


@pytest.mark.parametrize("reply", [None, "", "<html>", ["ex-1"], {"status": []}])
def test_reply_that_is_not_an_execution_object_is_an_invalid_payload(reply: object) -> None:
    with pytest.raises(InvalidPayload):
        Execution.from_api(reply)


def test_provider_timeout_after_a_failure_is_unknown() -> None:
    execution = Execution.from_api(
        body(
            "created",
            "authorizeRequested",
            "authorizeFailed",
            payments=[{"status": "Unknown", "operationResult": "ProviderTimeout"}],
        )
    )
    assert execution.outcome is ExecutionOutcome.UNKNOWN
    assert execution.is_terminal


@pytest.mark.parametrize(
    "payment",
    [
        {"status": "Failed", "operationResult": "Unknown"},
        {"status": "Failed", "operationResult": "Timeout"},
        {"status": "Failed", "operationResult": "ProviderTimeout"},
        {"status": "Unknown", "operationResult": "InternalServerError"},
    ],
)
def test_an_unknown_result_or_payment_status_is_never_read_as_a_decline(
    payment: dict[str, str],
) -> None:
    execution = Execution.from_api(
        body("created", "authorizeRequested", "authorizeFailed", payments=[payment])
    )
    assert execution.outcome is ExecutionOutcome.UNKNOWN


def test_seed_string_statuses_read_like_the_documented_codes() -> None:
    readings = {
        status: Execution.from_api({"id": "ex-1", "status": status}).outcome
        for status in ("authorized", "failed", "pending", "processing", "canceled", "refunded")
    }
    assert readings == {
        "authorized": ExecutionOutcome.SUCCEEDED,
        "failed": ExecutionOutcome.FAILED,
        "pending": ExecutionOutcome.PENDING,  # paused, but no URL to send the shopper to
        "processing": ExecutionOutcome.PENDING,
        "canceled": ExecutionOutcome.SUCCEEDED,
        "refunded": ExecutionOutcome.SUCCEEDED,
    }


def test_seed_pending_with_a_required_action_asks_for_the_challenge() -> None:
    execution = Execution.from_api(
        {
            "id": "ex-1",
            "status": "pending",
            "actionRequired": "3ds",
            "requiredAction": {"type": "redirect", "href": CHALLENGE_URL},
        }
    )
    assert execution.outcome is ExecutionOutcome.ACTION_REQUIRED
    assert execution.threeds_url == CHALLENGE_URL
