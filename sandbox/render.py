"""The execution resource as Payrails answers it: the documented shape, or the seed's."""

from __future__ import annotations

import random
from typing import Any

from sandbox.config import StatusShape
from sandbox.executions import Phase, SandboxExecution, iso


def challenge_url(base: str, execution_id: str) -> str:
    return f"{base}/public/3ds/{execution_id}"


def consumer_wait_url(base: str, execution_id: str) -> str:
    return f"{base}/public/consumer-wait/{execution_id}"


def execution_url(base: str, execution: SandboxExecution) -> str:
    return f"{base}/merchant/workflows/{execution.workflow_code}/executions/{execution.id}"


def render_execution(
    execution: SandboxExecution, *, base: str, shape: StatusShape, rng: random.Random
) -> dict[str, Any]:
    """The GET body; documented statuses come in a shuffled order, since order means nothing."""
    body: dict[str, Any] = {
        "id": execution.id,
        "createdAt": iso(execution.created_at),
        "merchantReference": execution.merchant_reference,
        "holderReference": execution.holder_reference,
        "workflow": {"code": execution.workflow_code, "version": 1},
        "meta": dict(execution.meta),
        "status": _status(execution, shape, rng),
        "links": _links(execution, base),
    }
    if execution.authorization is not None:
        body["amount"] = execution.authorization.amount.to_json()
    if execution.payments:
        body["payments"] = [payment.to_json() for payment in execution.payments]
    if execution.challenge_pending:
        href = challenge_url(base, execution.id)
        body["actionRequired"] = "3ds"
        body["requiredAction"] = {"type": "redirect", "href": href}
    return body


def _status(execution: SandboxExecution, shape: StatusShape, rng: random.Random) -> Any:
    if shape == "seed":
        return execution.phase.value
    entries = [{"code": code, "time": iso(moment)} for code, moment in execution.statuses]
    rng.shuffle(entries)
    return entries


def _links(execution: SandboxExecution, base: str) -> dict[str, Any]:
    own = execution_url(base, execution)
    links: dict[str, Any] = {
        "self": own,
        "consumerWait": consumer_wait_url(base, execution.id),
    }
    for action in allowed_actions(execution):
        links[action] = {"method": "POST", "href": f"{own}/{action}"}
    if execution.challenge_pending:
        href = challenge_url(base, execution.id)
        links["redirect"] = href
        links["3ds"] = href
    return links


def allowed_actions(execution: SandboxExecution) -> list[str]:
    """Links exist only for the actions allowed now."""
    phase = execution.phase
    if execution.latest_code.endswith("Requested"):
        return []  # one action at a time
    if phase in (Phase.CREATED, Phase.FAILED):
        return ["authorize"]
    if phase is Phase.AUTHORIZED:
        return ["capture", "cancel"]
    if phase is Phase.CAPTURED:
        refundable = execution.captured > execution.refunded
        return ["cancel", "refund"] if refundable else ["cancel"]
    return []
