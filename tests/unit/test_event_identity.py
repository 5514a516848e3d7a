"""``identify``, the ingress's fast path, against ``WebhookEvent.from_body``, the reference."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.events import (
    _CANONICAL_JSON,
    EventIdentity,
    WebhookEvent,
    _canonical,
    _identify_fast,
    identify,
)


def reference(body: bytes) -> EventIdentity | str:
    """What from_body makes of ``body``: the identity, or the InvalidPayload's message."""
    try:
        event = WebhookEvent.from_body(body)
    except InvalidPayload as exc:
        return str(exc)
    return EventIdentity(event.name, event.event_id, event.execution_id)


def ours(body: bytes) -> EventIdentity | str:
    try:
        return identify(body)
    except InvalidPayload as exc:
        return str(exc)


# Values where orjson and the stdlib part ways: integers past 64 bits, floats, lone surrogates,
# non-ASCII, escapes, empty strings.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2)
    | st.sampled_from(["", "exec-1", "evt_1", "é", "a\nb", "4111111111111111"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["id", "execution", "actionId", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    ["event", "id", "time", "details", "workflowExecutionId", "actionId", "success", "other"]
)
bodies = st.dictionaries(keys, values, max_size=6).map(
    lambda data: {"event": "executionActionCompleted", **data}
)


@given(bodies, st.booleans())
def test_identify_equals_the_stdlib_reference_on_any_json_object(
    data: dict[str, object], ascii_only: bool
) -> None:
    body = json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert ours(body) == reference(body)


@given(st.binary(max_size=120))
def test_identify_equals_the_stdlib_reference_on_any_bytes(body: bytes) -> None:
    assert ours(body) == reference(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "x", "details": {"execution": {"id": 18446744073709551616}}}',
        b'{"event": "x", "time": 1.5}',
        b'{"event": "x", "note": "\\ud800"}',
        b'\xef\xbb\xbf{"event": "x"}',
        b'{"event": "x", "n": NaN}',
        '{"event": "x"}'.encode("utf-16"),
        b'{"event": "x", "deep": ' + b"[" * 300 + b"]" * 300 + b"}",
    ],
)
def test_bodies_orjson_could_read_otherwise_go_to_the_stdlib(body: bytes) -> None:
    assert _identify_fast(body) is None
    assert ours(body) == reference(body)


def test_a_plain_payrails_body_takes_the_fast_path() -> None:
    body = json.dumps(
        {
            "event": "executionActionCompleted",
            "time": "2026-11-23T10:00:00.000Z",
            "details": {"actionId": "a-1", "success": True, "execution": {"id": "exec-1"}},
        }
    ).encode()
    assert _identify_fast(body) == reference(body)


@given(st.lists(st.none() | st.booleans() | st.text() | st.integers() | st.floats(), max_size=6))
def test_the_canonical_json_shortcut_gives_the_encoders_bytes(parts: list[object]) -> None:
    assert _canonical(parts) == _CANONICAL_JSON(parts)
