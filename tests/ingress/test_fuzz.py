"""Random bodies and headers only ever get 200, 400, 401 or 413."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.signature import sign
from ingress.webhook_app import WEBHOOK_PATH
from shared.messaging import Names
from tests.ingress.conftest import Client, StartIngress
from tests.settings import Settings

LIMIT = 2048
# Any code point, lone surrogates included: json.dumps escapes them and json.loads accepts them.
any_text = st.characters(exclude_categories=())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(any_text, max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=LIMIT + 64),
    st.builds(
        lambda event, extra: json.dumps({"event": event, **extra}).encode(),
        st.text(any_text, max_size=30),
        st.dictionaries(st.text(any_text, max_size=10), json_values, max_size=4),
    ),
)
header_text = st.text(
    alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=60
)


@pytest.fixture
async def fuzz_client(
    ingress_settings: Settings, topology: Names, start_ingress: StartIngress
) -> Client:
    return await start_ingress(
        ingress_settings.model_copy(update={"webhook_max_body_bytes": LIMIT})
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    signature=st.one_of(st.none(), header_text, st.just("sign")),
    extra_headers=st.dictionaries(
        st.one_of(
            st.sampled_from(["Content-Type", "Content-Encoding", "Accept", "X-Signature-Extra"]),
            st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z"),  # any HTTP token name
        ).filter(lambda name: name.lower() not in {"content-length", "transfer-encoding"}),
        header_text,
        max_size=4,
    ),
)
async def test_random_requests_get_only_200_400_401_or_413(
    fuzz_client: Client,
    ingress_settings: Settings,
    body: bytes,
    signature: str | None,
    extra_headers: dict[str, str],
) -> None:
    headers = dict(extra_headers)
    if signature == "sign":
        headers["X-Signature"] = sign(body, ingress_settings.payrails_webhook_keys[0])
    elif signature is not None:
        headers["X-Signature"] = signature
    response = await fuzz_client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status in {200, 400, 401, 413}
    await response.release()
