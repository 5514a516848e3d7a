"""``recon``: the operator CLI (dead letters, orders, reviews). Settings come from the environment.

Exit codes: 0 done; 1 failed (a dependency, a dead letter not found, a confirmation declined);
2 a usage error, an unknown order, or an operation or verdict the money rules refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import click
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import WorkerSettings
from shared.db.models import Order, OrderTransition, PaymentOperation
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import ConfigError, PublishError, ReconError
from shared.logging import configure_logging, redact_text
from shared.messaging import Names, connect, open_channel
from shared.money import Money
from shared.money_picture import MoneyPicture, VerdictRefused, show
from shared.money_requests import MoneyRuleError
from shared.operation_intake import Taken
from shared.operation_states import VERDICTS, OperationKind, OperationState
from shared.operation_store import OrderNotFound
from shared.order_store import apply_observation, lock_order, order_money, record_transition
from shared.payrails.client import PayrailsClient, open_payrails_client
from shared.state_machine import (
    REVIEW_VERDICTS,
    Cause,
    Observation,
    OrderStatus,
    Transition,
    resolve_review,
)
from worker import dlq
from worker import operator_operations as operator

T = TypeVar("T")


@dataclass
class Runtime:
    """What every command shares: how to load settings, and whether to set up logging."""

    env: dict[str, str] | None = None
    log_to_stderr: bool = False
    _settings: WorkerSettings | None = None

    def settings(self) -> WorkerSettings:
        if self._settings is None:
            try:
                # The worker's settings: the CLI runs in the worker's pod and, like the worker,
                # re-polls Payrails (dry-run, reconcile) and never verifies a webhook.
                env = os.environ if self.env is None else self.env
                self._settings = WorkerSettings.from_env(env)
            except ConfigError as exc:
                raise click.ClickException(f"configuration error: {exc}") from exc
            if self.log_to_stderr:
                # Operators read tables on stdout; only warnings (or LOG_LEVEL=DEBUG) on stderr.
                level = "DEBUG" if self._settings.log_level == "DEBUG" else "WARNING"
                json = self._settings.log_format == "json"
                configure_logging(level, json=json, stream=sys.stderr)
        return self._settings


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's work; a dependency that does not answer is exit 1 with a message."""
    try:
        return asyncio.run(coro)
    except (OSError, AMQPError, SQLAlchemyError) as exc:
        raise click.ClickException(redact_text(f"{type(exc).__name__}: {exc}")) from exc


def fail(message: str) -> click.exceptions.Exit:
    """Print to stderr and return the exit-1 exception for the caller to raise."""
    click.secho(message, err=True, fg="red")
    return click.exceptions.Exit(1)


def refuse(message: str) -> click.exceptions.Exit:
    """Print to stderr and return the exit-2 exception: an unknown order, a refused request."""
    click.secho(message, err=True, fg="red")
    return click.exceptions.Exit(2)


def not_found(reference: str) -> click.exceptions.Exit:
    return refuse(f"order {reference} not found")


@contextlib.asynccontextmanager
async def database(settings: WorkerSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def broker(settings: WorkerSettings) -> AsyncIterator[AbstractConnection]:
    connection = await connect(settings.amqp_url.reveal(), name="recon-cli")
    try:
        yield connection
    finally:
        await connection.close()


def progress(items: Sequence[T], label: str) -> Any:
    """A progress bar on stderr, so stdout stays a clean table."""
    return click.progressbar(items, label=label, file=sys.stderr)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print rows as aligned columns; '-' for missing values."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def amount(order: Order) -> str:
    """``12.50 EUR``: the currency's own minor digits."""
    return f"{order_money(order).format_value()} {order.currency}"


def human_age(age: timedelta | None) -> str | None:
    """``3d4h``, ``2h5m``, ``4m10s`` or ``9s``."""
    if age is None:
        return None
    days, rest = divmod(max(int(age.total_seconds()), 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate the Payrails reconciliation service: dead letters, orders, reviews.

    Reads the same environment as the service (DATABASE_URL, AMQP_URL, AMQP_NAME_PREFIX,
    PAYRAILS_*).
    """
    ctx.ensure_object(Runtime)


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)


# --- dead letters ----------------------------------------------------------------------------
@cli.group("dlq")
def dlq_group() -> None:
    """Inspect, replay and purge the dead-letter queue."""


@dlq_group.command("list")
@pass_runtime
def dlq_list(runtime: Runtime) -> None:
    """List dead letters: reason, attempts, age, event, execution and order.

    Messages are read with manual acks and all go back to the queue untouched.
    """
    settings = runtime.settings()
    letters = run(_read_letters(settings))
    now = datetime.now(UTC)
    table(
        ("id", "reason", "attempts", "age", "event", "execution", "order", "queue"),
        (
            (
                lt.id,
                lt.reason,
                lt.attempts,
                human_age(lt.age(now)),
                lt.event_name,
                lt.execution_id,
                lt.order_reference,
                lt.source_queue,
            )
            for lt in letters
        ),
    )
    click.echo(f"{len(letters)} dead letter(s)", err=True)


async def _read_letters(settings: WorkerSettings) -> list[dlq.DeadLetter]:
    names = Names.from_settings(settings)
    async with broker(settings) as connection:
        total = await dlq.dead_letter_count(connection, names)
        with progress(range(total), "reading dead letters") as bar:
            async with dlq.hold_dead_letters(
                connection, names, on_message=lambda _h: bar.update(1)
            ) as held:
                return [h.letter for h in held]


@dlq_group.command("replay")
@click.option("--id", "letter_id", metavar="ID", help="Replay the dead letter with this id.")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print order, from state and to state for each message; change nothing.",
)
@pass_runtime
def dlq_replay(runtime: Runtime, letter_id: str | None, replay_all: bool, dry_run: bool) -> None:
    """Republish dead letters to the queue they failed on, with the attempts reset.

    Each message is removed from the dead-letter queue only after the broker confirmed its copy.
    With --dry-run, Payrails is re-polled and the state machine asked what each replayed webhook
    would change, and each authorize command is checked the way the worker checks it (would it
    POST authorize, or skip); nothing is published and every message stays in the queue.
    """
    if letter_id is None and not replay_all:
        raise click.UsageError("give --id ID or --all")
    if letter_id is not None and replay_all:
        raise click.UsageError("--id and --all exclude each other")
    settings = runtime.settings()
    found, failures = run(_replay(settings, letter_id=letter_id, dry_run=dry_run))
    if letter_id is not None and found == 0:
        raise fail(f"no dead letter with id {letter_id}")
    if failures:
        raise fail(f"{failures} dead letter(s) could not be replayed")


async def _replay(
    settings: WorkerSettings, *, letter_id: str | None, dry_run: bool
) -> tuple[int, int]:
    names = Names.from_settings(settings)
    async with broker(settings) as connection, dlq.hold_dead_letters(connection, names) as held:
        chosen = dlq.select_letters(held, letter_id=letter_id)
        if dry_run:
            await _print_plans(settings, [h.letter for h in chosen])
            return len(chosen), 0
        return len(chosen), await _republish(settings, connection, names, chosen)


async def _print_plans(settings: WorkerSettings, letters: Sequence[dlq.DeadLetter]) -> None:
    names = Names.from_settings(settings)
    plans: list[dlq.ReplayPlan] = []
    async with database(settings) as sessions, open_payrails_client(settings) as payrails:
        with progress(letters, "re-polling Payrails") as bar:
            for letter in bar:
                plans.append(await dlq.plan_replay(letter, sessions, payrails, names))
    click.echo("dry run: nothing published, every message stays in the dead-letter queue")
    table(
        ("id", "order", "from", "to", "note"),
        (
            (p.letter.id, p.order_reference, p.from_status, p.to_status or "(unchanged)", p.note)
            for p in plans
        ),
    )


async def _republish(
    settings: WorkerSettings,
    connection: AbstractConnection,
    names: Names,
    chosen: Sequence[dlq.HeldLetter],
) -> int:
    failures = 0
    channel = await open_channel(connection)
    try:
        with progress(chosen, "replaying") as bar:
            for held in bar:
                try:
                    target = await dlq.replay(
                        held, channel, names, timeout=settings.amqp_publish_timeout_seconds
                    )
                except (dlq.ReplayError, PublishError) as exc:
                    failures += 1
                    click.echo(f"{held.letter.id}: not replayed: {exc}", err=True)
                    continue
                click.echo(f"{held.letter.id}: replayed to {target}")
    finally:
        await channel.close()
    return failures


@dlq_group.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def dlq_purge(runtime: Runtime, yes: bool) -> None:
    """Delete every message in the dead-letter queue."""
    settings = runtime.settings()
    names = Names.from_settings(settings)
    if not yes:
        click.confirm(f"Delete every message in {names.dead_letters_queue}?", abort=True, err=True)
    count = run(_purge(settings, names))
    click.echo(f"purged {count} message(s)")


async def _purge(settings: WorkerSettings, names: Names) -> int:
    async with broker(settings) as connection:
        return await dlq.purge(connection, names)


# --- orders ----------------------------------------------------------------------------------
@cli.group("orders")
def orders_group() -> None:
    """Look at one order, or reconcile it now."""


@orders_group.command("show")
@click.argument("reference")
@pass_runtime
def orders_show(runtime: Runtime, reference: str) -> None:
    """Show the order REFERENCE: its transition timeline with causes, its money picture
    (authorized, captured, refunded) and every operation with its state, amount, result code
    and key."""
    found = run(_load_order(runtime.settings(), reference))
    if found is None:
        raise not_found(reference)
    order, transitions, money = found
    for label, value in (
        ("reference", order.reference),
        ("status", order.status),
        ("amount", amount(order)),
        ("customer", order.customer_reference),
        ("execution", order.execution_id),
        ("failure reason", order.failure_reason),
        ("3-D Secure URL", order.threeds_url),
        ("created", order.created_at.isoformat()),
        ("updated", order.updated_at.isoformat()),
    ):
        click.echo(f"{label + ':':<16}{'-' if value is None else value}")
    click.echo("")
    table(
        ("at", "from", "to", "cause", "event"),
        (
            (t.created_at.isoformat(), t.from_status, t.to_status, t.cause, t.event_id)
            for t in transitions
        ),
    )
    click.echo("")
    print_picture(money.picture)
    click.echo("")
    print_operations(money.operations)


def totals_line(picture: MoneyPicture) -> str:
    """``authorized 12.50 EUR, captured 0.00 EUR, refunded 0.00 EUR``."""
    return ", ".join(
        f"{name} {show(picture.money(value))}"
        for name, value in (
            ("authorized", picture.authorized),
            ("captured", picture.captured),
            ("refunded", picture.refunded),
        )
    )


def print_picture(picture: MoneyPicture) -> None:
    for label, value in (
        ("capture mode", picture.capture_mode.value),
        ("authorized", show(picture.money(picture.authorized))),
        ("captured", show(picture.money(picture.captured))),
        ("refunded", show(picture.money(picture.refunded))),
    ):
        click.echo(f"{label + ':':<16}{value}")


def print_operations(rows: Sequence[PaymentOperation]) -> None:
    """One line per operation; its key is its idempotency key, an id and no secret."""
    if not rows:
        click.echo("no operations")
        return
    table(
        ("op", "kind", "state", "amount", "final", "result", "key", "updated", "reason"),
        (
            (
                row.id,
                row.kind.value,
                row.state.value,
                show(Money(row.amount_value, row.currency)),
                row.final,
                row.result_code,
                row.idempotency_key,
                row.updated_at.isoformat(),
                row.reason,
            )
            for row in rows
        ),
    )


async def _load_order(
    settings: WorkerSettings, reference: str
) -> tuple[Order, list[OrderTransition], operator.OrderMoney] | None:
    async with database(settings) as sessions:
        money = await operator.load_money(sessions, reference)
        if money is None:
            return None
        async with sessions() as session:
            rows = await session.scalars(
                select(OrderTransition)
                .where(OrderTransition.order_id == money.order.id)
                .order_by(OrderTransition.id)
            )
            return money.order, list(rows), money


# --- operations ------------------------------------------------------------------------------
AMOUNT_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")  # ASCII digits only


class AmountType(click.ParamType[Decimal, "str | Decimal"]):
    """An exact decimal amount such as ``12.34``, in the order's currency; never a float."""

    name = "amount"

    def convert(
        self, value: str | Decimal, param: click.Parameter | None, ctx: click.Context | None
    ) -> Decimal:
        if isinstance(value, Decimal):
            return value
        if not isinstance(value, str) or not AMOUNT_TEXT.fullmatch(value):
            self.fail(f"{value!r} is not an amount such as 12.34", param, ctx)
        return Decimal(value)


AMOUNT = AmountType()


capture_amount_option = click.option(
    "--amount",
    type=AMOUNT,
    default=None,
    help="In the order's currency, e.g. 12.34; without it, all that is authorized and not "
    "captured.",
)
refund_amount_option = click.option(
    "--amount",
    type=AMOUNT,
    default=None,
    help="In the order's currency, e.g. 12.34; without it, all that is captured and not refunded.",
)
dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Check the money rules and print the outcome; store and send nothing.",
)
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


@orders_group.command("capture")
@click.argument("reference")
@capture_amount_option
@click.option(
    "--final/--no-final",
    default=True,
    show_default=True,
    help="Whether this capture closes capturing (--no-final: more partial captures may follow).",
)
@dry_run_option
@yes_option
@pass_runtime
def orders_capture(
    runtime: Runtime,
    reference: str,
    amount: Decimal | None,
    final: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Capture the order REFERENCE (manual capture mode), in full or --amount."""
    operate(runtime, reference, OperationKind.CAPTURE, amount, final, dry_run=dry_run, yes=yes)


@orders_group.command("cancel")
@click.argument("reference")
@click.option(
    "--amount",
    type=AMOUNT,
    default=None,
    hidden=True,  # refused by the money rules, as the merchant API refuses it: never partial
)
@dry_run_option
@yes_option
@pass_runtime
def orders_cancel(
    runtime: Runtime, reference: str, amount: Decimal | None, dry_run: bool, yes: bool
) -> None:
    """Cancel the order REFERENCE: void what is not captured, refund what is. Always in full."""
    operate(runtime, reference, OperationKind.CANCEL, amount, True, dry_run=dry_run, yes=yes)


@orders_group.command("refund")
@click.argument("reference")
@refund_amount_option
@dry_run_option
@yes_option
@pass_runtime
def orders_refund(
    runtime: Runtime, reference: str, amount: Decimal | None, dry_run: bool, yes: bool
) -> None:
    """Refund the order REFERENCE, in full or --amount (several partial refunds may follow)."""
    operate(runtime, reference, OperationKind.REFUND, amount, True, dry_run=dry_run, yes=yes)


def operate(
    runtime: Runtime,
    reference: str,
    kind: OperationKind,
    value: Decimal | None,
    final: bool,
    *,
    dry_run: bool,
    yes: bool,
) -> None:
    """Print the plan; then, confirmed, store the operation and hand it to the worker.

    The same path as the merchant API's: Payrails is called by the worker, never from here.
    """
    settings = runtime.settings()
    try:
        planned = run(_plan(settings, reference, kind, value, final))
    except OrderNotFound as exc:
        raise not_found(reference) from exc
    except MoneyRuleError as exc:
        raise refuse(f"{kind.value} refused ({exc.code}): {exc}") from exc
    print_plan(reference, planned)
    if dry_run:
        click.echo("dry run: the money rules allow it; nothing stored, nothing sent")
        return
    if not yes and not click.confirm(f"Request this {kind.value}?", default=False, err=True):
        raise fail("not confirmed: nothing stored, nothing sent")
    try:
        taken = run(_request(settings, reference, planned))
    except OrderNotFound as exc:
        raise not_found(reference) from exc
    except MoneyRuleError as exc:
        raise refuse(f"{kind.value} refused ({exc.code}): {exc}; nothing stored") from exc
    except operator.MoneyChanged as exc:
        raise fail(
            f"{exc}; nothing stored, look again with: recon orders show {reference}"
        ) from exc
    operation = taken.operation
    click.echo(
        f"{reference}: {kind.value} of {show(Money(operation.amount_value, operation.currency))} "
        f"requested: operation {operation.id}, key {operation.idempotency_key}"
    )
    if taken.execute is None:
        return
    problem = run(operator.hand_over(settings, taken.execute))
    if problem is not None:
        raise fail(
            f"stored as requested, but not handed to the worker: {problem}; the sweeper sends "
            "it again once it has been requested too long"
        )
    click.echo(f"handed to the worker; follow it with: recon orders show {reference}")


def print_plan(reference: str, planned: operator.Plan) -> None:
    request = planned.request
    what = f"{request.kind.value} {show(planned.before.money(planned.value))}"
    if request.kind is OperationKind.CAPTURE:
        what += " (final)" if request.final else " (not final: more captures may follow)"
    for label, value in (
        ("order", reference),
        ("capture mode", planned.before.capture_mode.value),
        ("now", totals_line(planned.before)),
        ("operation", what),
        ("if it succeeds", totals_line(planned.after)),
    ):
        click.echo(f"{label + ':':<16}{value}")


async def _plan(
    settings: WorkerSettings,
    reference: str,
    kind: OperationKind,
    value: Decimal | None,
    final: bool,
) -> operator.Plan:
    async with database(settings) as sessions:
        money = await operator.load_money(sessions, reference)
    if money is None:
        raise OrderNotFound(f"no order {reference!r}")
    return operator.plan(money.picture, operator.make_request(money.picture, kind, value, final))


async def _request(settings: WorkerSettings, reference: str, planned: operator.Plan) -> Taken:
    async with database(settings) as sessions:
        return await operator.request(sessions, reference, planned)


@orders_group.command("reconcile")
@click.argument("reference")
@pass_runtime
def orders_reconcile(runtime: Runtime, reference: str) -> None:
    """Re-poll the execution of order REFERENCE now and apply it (cause: operator)."""
    try:
        outcome = run(_reconcile(runtime.settings(), reference))
    except OrderNotFound as exc:
        raise not_found(reference) from exc
    if isinstance(outcome, str):
        raise fail(outcome)
    current, transition, payrails_status = outcome
    if transition is None:
        click.echo(f"{reference}: unchanged ({current}; Payrails: {payrails_status})")
    else:
        click.echo(
            f"{reference}: {transition.from_status} -> {transition.to_status} "
            f"(Payrails: {payrails_status})"
        )


async def _reconcile(
    settings: WorkerSettings, reference: str
) -> str | tuple[str, Transition | None, str | None]:
    async with database(settings) as sessions, open_payrails_client(settings) as payrails:
        async with sessions() as session:
            row = (
                await session.execute(
                    select(Order.id, Order.execution_id).where(Order.reference == reference)
                )
            ).first()
        if row is None:
            raise OrderNotFound(f"no order {reference!r}")
        if row.execution_id is None:
            return f"order {reference} has no execution yet"
        return await _apply_operator_poll(sessions, payrails, reference, row.execution_id)


async def _apply_operator_poll(
    sessions: async_sessionmaker[AsyncSession],
    payrails: PayrailsClient,
    reference: str,
    execution_id: str,
) -> str | tuple[str, Transition | None, str | None]:
    try:
        execution = await payrails.get_execution(execution_id)
    except ReconError as exc:
        return f"Payrails did not answer: {type(exc).__name__}: {exc}"
    async with sessions.begin() as session:
        order = await lock_order(session, reference=reference)
        if order is None:
            raise OrderNotFound(f"no order {reference!r}")
        transition = await apply_observation(
            session,
            order,
            Observation.from_execution(execution, order_money(order)),
            Cause.OPERATOR,
            detail={"execution_status": execution.latest_code, "via": "recon orders reconcile"},
        )
        return order.status.value, transition, execution.latest_code


# --- reviews ---------------------------------------------------------------------------------
@cli.group("review")
def review_group() -> None:
    """Orders waiting for a person."""


@review_group.command("list")
@pass_runtime
def review_list(runtime: Runtime) -> None:
    """List orders in needs_review and operations whose outcome is unknown: Payrails could not
    say whether money moved."""
    orders, operations = run(_needs_review(runtime.settings()))
    table(
        ("order", "execution", "amount", "reason", "since"),
        (
            (
                o.reference,
                o.execution_id,
                amount(o),
                o.failure_reason,
                o.updated_at.isoformat(),
            )
            for o in orders
        ),
    )
    click.echo("")
    table(
        ("order", "op", "kind", "amount", "result", "key", "since", "reason"),
        (
            (
                reference,
                op.id,
                op.kind.value,
                show(Money(op.amount_value, op.currency)),
                op.result_code,
                op.idempotency_key,
                op.updated_at.isoformat(),
                op.reason,
            )
            for reference, op in operations
        ),
    )
    click.echo(
        f"{len(orders)} order(s) in needs_review, "
        f"{len(operations)} operation(s) with an unknown outcome",
        err=True,
    )


async def _needs_review(
    settings: WorkerSettings,
) -> tuple[list[Order], list[tuple[str, PaymentOperation]]]:
    async with database(settings) as sessions:
        async with sessions() as session:
            rows = await session.scalars(
                select(Order)
                .where(Order.status == OrderStatus.NEEDS_REVIEW)
                .order_by(Order.updated_at)
            )
            orders = list(rows)
        return orders, await operator.unknown_operations(sessions)


ORDER_VERDICTS = sorted(verdict.value for verdict in REVIEW_VERDICTS)
OPERATION_VERDICTS = sorted(verdict.value for verdict in VERDICTS)


@review_group.command("resolve")
@click.argument("reference")
@click.option(
    "--operation",
    metavar="ID",
    help="Resolve this operation of the order (its op number or key, from `review list`).",
)
@click.option(
    "--verdict",
    type=click.Choice([*ORDER_VERDICTS, *OPERATION_VERDICTS]),
    required=True,
    help="What the PSP confirmed. An order: the money moved (paid) or it did not "
    "(payment_failed). An --operation: succeeded or failed.",
)
@click.option("--note", required=True, help="Why: the evidence, e.g. a PSP reference.")
@pass_runtime
def review_resolve(
    runtime: Runtime, reference: str, operation: str | None, verdict: str, note: str
) -> None:
    """Close a needs_review order, or an operation with an unknown outcome, with a person's
    verdict; announces it like any transition or outcome."""
    if operation is not None:
        resolve_operation(runtime, reference, operation, verdict, note)
        return
    if verdict not in ORDER_VERDICTS:
        raise click.UsageError(
            f"an order's verdict is one of {', '.join(ORDER_VERDICTS)} "
            f"({verdict} is for an --operation)"
        )
    try:
        problem = run(_resolve(runtime.settings(), reference, OrderStatus(verdict), note))
    except OrderNotFound as exc:
        raise not_found(reference) from exc
    if problem is not None:
        raise fail(problem)
    click.echo(f"{reference}: needs_review -> {verdict}")


def resolve_operation(
    runtime: Runtime, reference: str, operation: str, verdict: str, note: str
) -> None:
    if verdict not in OPERATION_VERDICTS:
        raise click.UsageError(
            f"an operation's verdict is one of {', '.join(OPERATION_VERDICTS)} "
            f"({verdict} is for an order)"
        )
    settings = runtime.settings()
    try:
        done = run(
            _resolve_operation(settings, reference, operation, OperationState(verdict), note)
        )
    except OrderNotFound as exc:
        raise not_found(reference) from exc
    except VerdictRefused as exc:
        raise refuse(f"verdict refused: {exc}") from exc
    announced = done.routing_key or "nothing"
    click.echo(
        f"{reference}: operation {done.operation.id} ({done.operation.kind.value}) "
        f"unknown -> {done.operation.state.value}; announced {announced}"
    )
    click.echo(f"{'now:':<16}{totals_line(done.picture)}")


async def _resolve_operation(
    settings: WorkerSettings,
    reference: str,
    operation: str,
    verdict: OperationState,
    note: str,
) -> operator.Verdict:
    async with database(settings) as sessions:
        return await operator.resolve(sessions, reference, operation, verdict, note)


async def _resolve(
    settings: WorkerSettings, reference: str, verdict: OrderStatus, note: str
) -> str | None:
    async with database(settings) as sessions, sessions.begin() as session:
        order = await lock_order(session, reference=reference)
        if order is None:
            raise OrderNotFound(f"no order {reference!r}")
        transition = resolve_review(order.status, verdict, note)
        if transition is None:
            return f"order {reference} is {order.status}, not needs_review"
        await record_transition(
            session, order, transition, Cause.OPERATOR, detail={"via": "recon review resolve"}
        )
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``recon``."""
    cli.main(args=argv, prog_name="recon", obj=Runtime(log_to_stderr=True))
