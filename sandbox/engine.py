"""What the sandbox's PSPs do: executions, authorize by test card, 3-D Secure, follow-up actions.

Actions are acknowledged at once and complete on a background task after
``action_delay_seconds``, as Payrails processes them asynchronously.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from sandbox import ledger, notifications
from sandbox.amounts import FAILED_RESULT, UNKNOWN_RESULT, OperationOutcome, outcome_of
from sandbox.capture import CapturePolicy, policy_override
from sandbox.cards import Behaviour
from sandbox.errors import ApiError, invalid, not_allowed, not_found
from sandbox.executions import (
    Authorization,
    Payment,
    Phase,
    SandboxExecution,
    iso,
    payment_error,
)
from sandbox.operations import Operation, OperationState
from sandbox.render import (
    action_links,
    allowed_actions,
    challenge_url,
    consumer_wait_url,
    execution_url,
)
from sandbox.state import SandboxState
from sandbox.webhooks import WebhookDispatcher
from shared.errors import InvalidPayload
from shared.money import Money

log = structlog.get_logger(__name__)

PRIMARY_PSP = "sandbox-psp-primary"
SECONDARY_PSP = "sandbox-psp-secondary"
# Payrails staging was seen adding an authorizePending after a PSP decline (not after 3DS fails).
TRAILING_PENDING_RESULTS = frozenset({"InsufficientBalance"})
THREEDS_RESULT = {"challenged": True, "enrolled": "Y", "transStatus": "Y", "version": "2.2.0"}
# An approval without a challenge: the issuer authenticated the shopper frictionlessly.
FRICTIONLESS_RESULT = {
    "challenged": False,
    "enrolled": "Y",
    "transStatus": "Y",
    "eci": "05",
    "version": "2.2.0",
}


class PaymentEngine:
    """The executions' behaviour; every change goes through here."""

    def __init__(self, state: SandboxState, webhooks: WebhookDispatcher) -> None:
        self._state = state
        self._webhooks = webhooks
        self._tasks: set[asyncio.Task[None]] = set()

    # --- executions ---------------------------------------------------------------------------
    def create(self, workflow_code: str, body: Mapping[str, Any]) -> SandboxExecution:
        reference = body.get("merchantReference")
        if not isinstance(reference, str) or not reference:
            raise invalid("merchantReference is required")
        meta = body.get("meta", {})
        if not isinstance(meta, Mapping):
            raise invalid("meta must be an object")
        holder = body.get("holderReference")
        workspace = body.get("workspaceId")
        execution = SandboxExecution(
            id=str(uuid.uuid4()),
            workflow_code=workflow_code,
            merchant_reference=reference,
            holder_reference=holder if isinstance(holder, str) else "",
            workspace_id=workspace
            if isinstance(workspace, str)
            else self._state.config.workspace_id,
            meta=dict(meta),
            created_at=datetime.now(UTC),
            capture_policy=policy_override(body),
        )
        execution.add_status("created")
        self._state.executions[execution.id] = execution
        self._state.stats.executions_created += 1
        log.info("sandbox.execution.created", execution_id=execution.id)
        return execution

    def get(self, workflow_code: str, execution_id: str) -> SandboxExecution:
        execution = self._state.executions.get(execution_id)
        if execution is None or execution.workflow_code != workflow_code:
            raise not_found("execution")
        return execution

    # --- authorize ----------------------------------------------------------------------------
    def authorize(
        self, execution: SandboxExecution, body: Mapping[str, Any], base: str
    ) -> dict[str, Any]:
        """Accept an authorize; its outcome follows on a background task."""
        self._state.stats.authorize_attempts[execution.id] += 1
        if "authorize" not in allowed_actions(execution):
            raise not_allowed(f"authorize is not allowed while the execution is {execution.phase}")
        authorization = self._parse_authorize(execution, body, base)
        execution.authorization = authorization
        execution.phase = Phase.PROCESSING
        execution.add_status("authorizeRequested")
        self._state.stats.authorizes[execution.id] += 1
        self._state.stats.actions["authorize"] += 1
        self._later(lambda: self._finish_authorize(execution, authorization))
        log.info("sandbox.authorize.requested", execution_id=execution.id)
        return self._ack("authorize", authorization.action_id, execution, base)

    def _parse_authorize(
        self, execution: SandboxExecution, body: Mapping[str, Any], base: str
    ) -> Authorization:
        amount = _money(body.get("amount"))
        return_info = body.get("returnInfo")
        success_url = return_info.get("success") if isinstance(return_info, Mapping) else None
        if not isinstance(success_url, str) or not success_url:
            raise invalid("returnInfo.success is required")
        composition = body.get("paymentComposition")
        if not isinstance(composition, list) or not composition:
            raise invalid("paymentComposition is required")
        first = composition[0]
        instrument_id = first.get("paymentInstrumentId") if isinstance(first, Mapping) else None
        instrument = self._state.instruments.get(str(instrument_id))
        if instrument is None or instrument.holder_reference != execution.holder_reference:
            # Another holder's instrument gets the very answer an unknown one does: a probe
            # learns nothing about instruments it does not own.
            raise invalid("paymentComposition[0].paymentInstrumentId is unknown")
        method = first.get("paymentMethodCode", "card")
        return Authorization(
            action_id=str(uuid.uuid4()),
            amount=amount,
            instrument_id=instrument.id,
            method_code=str(method),
            behaviour=instrument.behaviour,
            return_success=success_url,
            base_url=base,
            card_network=instrument.network,
            card_last4=instrument.last4,
        )

    def _finish_authorize(self, execution: SandboxExecution, auth: Authorization) -> None:
        behaviour = auth.behaviour
        if behaviour in (Behaviour.CHALLENGE, Behaviour.CASCADE):
            self._pause_for_challenge(execution, auth)
        elif behaviour is Behaviour.DECLINE:
            self._fail(
                execution, auth, _payment(auth, PRIMARY_PSP, "Failed", "InsufficientBalance")
            )
        elif behaviour is Behaviour.UNKNOWN:
            self._fail(execution, auth, _payment(auth, PRIMARY_PSP, "Unknown", "ProviderTimeout"))
        else:
            approved = _payment(auth, PRIMARY_PSP, "Authorized", "Success", FRICTIONLESS_RESULT)
            self._succeed(execution, auth, [approved])

    def _pause_for_challenge(self, execution: SandboxExecution, auth: Authorization) -> None:
        payment = _payment(auth, PRIMARY_PSP, "Pending", "HTTPRedirectRequired")
        execution.payments.append(payment)
        execution.challenge_pending = True
        execution.phase = Phase.PENDING
        execution.add_status("authorizePending")
        if self._state.config.pending_webhooks:
            href = challenge_url(self._base(auth), execution.id)
            body = notifications.action_pending(
                execution, action_id=auth.action_id, href=href, payments=[payment]
            )
            self._webhooks.emit(body["event"], execution.id, body)
        self._later(
            lambda: self._expire_challenge(execution, auth),
            delay=self._state.config.challenge_expiry_seconds,
        )

    def _expire_challenge(self, execution: SandboxExecution, auth: Authorization) -> None:
        """The shopper never answered: the authorization fails with an expired payment."""
        if not execution.challenge_pending or execution.authorization is not auth:
            return
        execution.challenge_pending = False
        pending = execution.payments.pop()
        expired = _payment(auth, PRIMARY_PSP, "Expired", "AuthenticationRequired")
        log.info("sandbox.challenge.expired", execution_id=execution.id)
        self._fail(execution, auth, expired, payment_id=pending.id)

    def resolve_challenge(self, execution: SandboxExecution, *, completed: bool) -> bool:
        """The shopper pressed Complete or Fail; False if no challenge was pending."""
        auth = execution.authorization
        if not execution.challenge_pending or auth is None:
            return False
        execution.challenge_pending = False
        execution.touch()
        self._later(lambda: self._finish_challenge(execution, auth, completed=completed))
        return True

    def _finish_challenge(
        self, execution: SandboxExecution, auth: Authorization, *, completed: bool
    ) -> None:
        pending = execution.payments.pop()
        threeds = dict(THREEDS_RESULT, transStatus="Y" if completed else "N")
        if not completed:
            failed = _payment(auth, PRIMARY_PSP, "Failed", "PayerAuthenticationFailed", threeds)
            self._fail(execution, auth, failed, payment_id=pending.id)
            return
        if auth.behaviour is Behaviour.CASCADE:
            primary = _payment(auth, PRIMARY_PSP, "Failed", "GenericRejection", threeds)
            primary.id = pending.id
            secondary = _payment(auth, SECONDARY_PSP, "Authorized", "Success", threeds)
            self._succeed(execution, auth, [primary, secondary])
            return
        approved = _payment(auth, PRIMARY_PSP, "Authorized", "Success", threeds)
        approved.id = pending.id
        self._succeed(execution, auth, [approved])

    def _succeed(
        self, execution: SandboxExecution, auth: Authorization, payments: list[Payment]
    ) -> None:
        execution.payments.extend(payments)
        execution.phase = Phase.AUTHORIZED
        execution.add_status("authorizeSuccessful")
        self._completed(execution, "authorize", auth.action_id, True, auth.amount, payments)
        config = self._state.config
        policy = execution.capture_policy or CapturePolicy(
            config.capture_mode, config.capture_delay_seconds
        )
        execution.capture_policy = policy
        if policy.mode == "delayed":
            self._later(lambda: self._auto_capture(execution), delay=policy.delay_seconds)
        elif policy.automatic:
            self._auto_capture(execution)

    def _fail(
        self,
        execution: SandboxExecution,
        auth: Authorization,
        payment: Payment,
        *,
        payment_id: str | None = None,
    ) -> None:
        if payment_id is not None:
            payment.id = payment_id
        execution.payments.append(payment)
        execution.phase = Phase.FAILED
        execution.add_status("authorizeFailed")
        config = self._state.config
        if (
            payment.operation_result in TRAILING_PENDING_RESULTS
            and config.trailing_pending_after_decline
        ):
            execution.add_status("authorizePending")  # seen on Payrails staging after declines
        self._completed(execution, "authorize", auth.action_id, False, auth.amount, [payment])

    # --- capture / cancel / refund ------------------------------------------------------------
    def act(
        self, execution: SandboxExecution, action: str, body: Mapping[str, Any], base: str
    ) -> dict[str, Any]:
        """Accept a capture, cancel or refund under the money rules; it completes later."""
        plan = _PLANS[action](execution, body)
        operation = self._start(execution, action, plan, automatic=False)
        return self._ack(action, operation.action_id, execution, base)

    def _auto_capture(self, execution: SandboxExecution) -> None:
        """Payrails' own capture of an instant- or delayed-capture execution (the whole amount)."""
        try:
            plan = ledger.plan_capture(execution, {})
        except ApiError as exc:  # the merchant captured or canceled it first
            log.info(
                "sandbox.capture.automatic_skipped", execution_id=execution.id, reason=exc.detail
            )
            return
        self._start(execution, "capture", plan, automatic=True)

    def _start(
        self, execution: SandboxExecution, action: str, plan: ledger.Plan, *, automatic: bool
    ) -> Operation:
        operation = Operation(
            action=action,
            action_id=str(uuid.uuid4()),
            amount=plan.amount,
            outcome=outcome_of(plan.amount),
            requested_at=datetime.now(UTC),
            final=plan.final,
            automatic=automatic,
            voids=plan.voids,
            refunds=plan.refunds,
        )
        execution.operations.append(operation)
        execution.add_status(f"{action}Requested")
        self._state.stats.actions[action] += 1
        if operation.outcome is not OperationOutcome.TIME_OUT:
            self._later(lambda: self._finish_operation(execution, operation))
        log.info(
            "sandbox.action.requested",
            execution_id=execution.id,
            action=action,
            automatic=automatic,
            outcome=operation.outcome.value,
        )
        return operation

    def _finish_operation(self, execution: SandboxExecution, operation: Operation) -> None:
        operation.completed_at = datetime.now(UTC)
        action = operation.action
        if operation.outcome is OperationOutcome.SUCCEED:
            operation.state = OperationState.SUCCEEDED
            operation.result = "Success"
            ledger.apply(execution, operation)
            execution.add_status(f"{action}Successful")
        else:
            unknown = operation.outcome is OperationOutcome.UNKNOWN
            operation.state = OperationState.UNKNOWN if unknown else OperationState.FAILED
            operation.result = UNKNOWN_RESULT if unknown else FAILED_RESULT
            execution.add_status(f"{action}Failed", (payment_error(operation.result),))
        success = operation.state is OperationState.SUCCEEDED
        log.info(
            "sandbox.action.completed", execution_id=execution.id, action=action, success=success
        )
        approved = [p for p in execution.payments if p.success]
        body = notifications.operation_completed(execution, operation, approved)
        self._webhooks.emit(body["event"], execution.id, body)

    # --- plumbing -----------------------------------------------------------------------------
    def _completed(
        self,
        execution: SandboxExecution,
        action: str,
        action_id: str,
        success: bool,
        amount: Money | None,
        payments: list[Payment],
    ) -> None:
        log.info(
            "sandbox.action.completed", execution_id=execution.id, action=action, success=success
        )
        body = notifications.action_completed(
            execution,
            action=action,
            action_id=action_id,
            success=success,
            amount=amount,
            payments=payments,
        )
        self._webhooks.emit(body["event"], execution.id, body)

    def _ack(
        self, name: str, action_id: str, execution: SandboxExecution, base: str
    ) -> dict[str, Any]:
        return {
            "name": name,
            "actionId": action_id,
            "executedAt": iso(datetime.now(UTC)),
            "links": {
                "execution": execution_url(base, execution),
                "consumerWait": consumer_wait_url(base, execution.id),
                **action_links(base, execution),
            },
        }

    def _base(self, auth: Authorization) -> str:
        return self._state.config.public_url or auth.base_url

    def _later(self, step: Callable[[], None], *, delay: float | None = None) -> None:
        task = asyncio.create_task(self._run_later(step, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_later(self, step: Callable[[], None], delay: float | None) -> None:
        await asyncio.sleep(self._state.config.action_delay_seconds if delay is None else delay)
        try:
            step()
        except Exception:  # a bug in the sandbox must not vanish inside a task
            log.exception("sandbox.action.crashed")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_PLANS: dict[str, Callable[[SandboxExecution, Mapping[str, Any]], ledger.Plan]] = {
    "capture": ledger.plan_capture,
    "cancel": ledger.plan_cancel,
    "refund": ledger.plan_refund,
}


def _payment(
    auth: Authorization,
    provider: str,
    status: str,
    result: str,
    threeds: Mapping[str, Any] | None = None,
) -> Payment:
    return Payment(
        id=str(uuid.uuid4()),
        instrument_id=auth.instrument_id,
        method_code=auth.method_code,
        amount=auth.amount,
        provider_id=provider,
        status=status,
        operation_result=result,
        threeds=threeds,
        psp_reference=f"psp_{uuid.uuid4().hex[:20]}",
        card_network=auth.card_network,
        card_last4=auth.card_last4,
    )


def _money(raw: object) -> Money:
    if not isinstance(raw, Mapping):
        raise invalid("amount {value, currency} is required")
    try:
        return Money.parse(raw.get("value"), raw.get("currency"))
    except InvalidPayload as exc:
        raise invalid(f"amount: {exc}") from exc
