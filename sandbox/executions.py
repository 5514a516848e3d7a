"""The sandbox's executions: statuses with times, payments, and waiting for a status to change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from sandbox.capture import CapturePolicy
from sandbox.cards import Behaviour
from sandbox.operations import Operation
from shared.money import Money


class Phase(StrEnum):
    """Where the execution stands; the seed's string status is this value."""

    CREATED = "created"
    PROCESSING = "processing"
    PENDING = "pending"
    AUTHORIZED = "authorized"
    FAILED = "failed"
    CAPTURED = "captured"
    CANCELED = "canceled"
    REFUNDED = "refunded"


def iso(moment: datetime) -> str:
    """Payrails' timestamp form: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusMark(NamedTuple):
    """One ``status[]`` entry: a code, its time, and the errors of a failed action."""

    code: str
    time: datetime
    errors: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Payment:
    """One PSP attempt of an authorize (a cascade has two)."""

    id: str
    instrument_id: str
    method_code: str
    amount: Money
    provider_id: str
    status: str
    operation_result: str
    threeds: Mapping[str, Any] | None = None
    psp_reference: str | None = None
    card_network: str | None = None  # display data only: the network and the last four digits
    card_last4: str | None = None

    @property
    def success(self) -> bool:
        return self.operation_result == "Success"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "paymentId": self.id,
            "status": self.status,
            "operationResult": self.operation_result,
            "amount": self.amount.to_json(),
            "paymentInstrumentId": self.instrument_id,
            "paymentMethodCode": self.method_code,
            "providerId": self.provider_id,
        }
        if self.threeds is not None:
            body["threeDS"] = dict(self.threeds)
        if self.psp_reference is not None:
            body["pspReference"] = self.psp_reference
        body.update(self._instrument())
        return body

    def _instrument(self) -> dict[str, Any]:
        """The instrument's display data, as Payrails shows a tokenized card: never its number."""
        if self.card_network is None and self.card_last4 is None:
            return {}
        data = {"network": self.card_network, "suffix": self.card_last4}
        return {"paymentInstrument": {"id": self.instrument_id, "data": data}}

    def composition(self, operation: str = "Authorize") -> dict[str, Any]:
        """This payment as a webhook's ``paymentComposition`` item for one operation."""
        item: dict[str, Any] = {
            "paymentId": self.id,
            "paymentInstrumentId": self.instrument_id,
            "paymentMethodCode": self.method_code,
            "integrationType": "api",
            "providerId": self.provider_id,
            "operationType": operation,
            "operationResult": self.operation_result,
            "success": self.success,
            "amount": self.amount.to_json(),
            "storeInstrument": False,
        }
        if self.threeds is not None:
            item["threeDS"] = dict(self.threeds)
        if self.psp_reference is not None:
            item["operationProviderReference"] = self.psp_reference
        item.update(self._instrument())
        if self.status in ("Failed", "Unknown"):
            item["errors"] = [payment_error(self.operation_result)]
        return item


def payment_error(result: str) -> dict[str, Any]:
    return {"id": f"err-{result}", "title": "execution.payment-method.failed", "detail": result}


@dataclass(slots=True)
class Authorization:
    """The authorize action in flight or done."""

    action_id: str
    amount: Money
    instrument_id: str
    method_code: str
    behaviour: Behaviour
    return_success: str
    base_url: str
    card_network: str | None = None
    card_last4: str | None = None


@dataclass(slots=True)
class SandboxExecution:
    id: str
    workflow_code: str
    merchant_reference: str
    holder_reference: str
    workspace_id: str
    meta: Mapping[str, Any]
    created_at: datetime
    statuses: list[StatusMark] = field(default_factory=list)
    phase: Phase = Phase.CREATED
    payments: list[Payment] = field(default_factory=list)
    authorization: Authorization | None = None
    challenge_pending: bool = False
    # None: the sandbox run's capture mode when the authorize succeeds.
    capture_policy: CapturePolicy | None = None
    operations: list[Operation] = field(default_factory=list)
    captured: Decimal = Decimal(0)  # completed captures
    refunded: Decimal = Decimal(0)  # completed refunds (a cancel's refunded part included)
    voided: Decimal = Decimal(0)  # uncaptured amount a cancel released
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def add_status(self, code: str, errors: tuple[dict[str, Any], ...] = ()) -> None:
        """Append a status at a time strictly after the previous one, and wake long-polls."""
        now = datetime.now(UTC)
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self.statuses and moment <= self.statuses[-1].time:
            moment = self.statuses[-1].time + timedelta(milliseconds=1)
        self.statuses.append(StatusMark(code, moment, errors))
        self.touch()

    def touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def latest_code(self) -> str:
        return max(self.statuses, key=lambda s: s.time).code if self.statuses else "created"

    def is_waiting(self, codes: Collection[str]) -> bool:
        return self.latest_code in codes or self.phase.value in codes

    async def wait_while(self, codes: Collection[str], max_wait: float) -> None:
        """Return once the latest status is not in ``codes``, or after ``max_wait`` seconds."""
        deadline = time.monotonic() + max_wait
        while self.is_waiting(codes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def reference(self) -> dict[str, Any]:
        """The ``execution`` object of a webhook."""
        return {
            "id": self.id,
            "merchantReference": self.merchant_reference,
            "holderReference": self.holder_reference,
            "workflowCode": self.workflow_code,
            "meta": dict(self.meta),
        }
