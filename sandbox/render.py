"""The execution resource as Payrails answers it: the documented shape, or the seed's."""

from __future__ import annotations

import random
from typing import Any

from sandbox.config import StatusShape
from sandbox.executions import Phase, SandboxExecution, StatusMark, iso
from sandbox.ledger import next_actions


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
    entries = [_status_entry(mark) for mark in execution.statuses]
    rng.shuffle(entries)
    return entries


def _status_entry(mark: StatusMark) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": mark.code, "time": iso(mark.time)}
    if mark.errors:
        entry["errors"] = [dict(error) for error in mark.errors]
    return entry


def _links(execution: SandboxExecution, base: str) -> dict[str, Any]:
    own = execution_url(base, execution)
    links: dict[str, Any] = {
        "self": own,
        "consumerWait": consumer_wait_url(base, execution.id),
    }
    links.update(action_links(base, execution))
    if execution.challenge_pending:
        href = challenge_url(base, execution.id)
        links["redirect"] = href
        links["3ds"] = href
    return links


def action_links(base: str, execution: SandboxExecution) -> dict[str, Any]:
    """``{action: {method, href}}`` for each action allowed now."""
    own = execution_url(base, execution)
    return {
        action: {"method": "POST", "href": f"{own}/{action}"}
        for action in allowed_actions(execution)
    }


def allowed_actions(execution: SandboxExecution) -> list[str]:
    """Links exist only for the actions allowed now (the money rules decide capture and after)."""
    if execution.phase in (Phase.CREATED, Phase.FAILED):
        # One authorize at a time; a decline leaves the execution open for another.
        return [] if execution.latest_code == "authorizeRequested" else ["authorize"]
    return next_actions(execution)
