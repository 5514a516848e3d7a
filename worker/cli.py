"""``recon``: the operator CLI (dead letters, orders, reviews). Settings come from the environment.

Exit codes: 0 done, 1 not found or failed, 2 usage error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import WorkerSettings
from shared.db.models import Order, OrderTransition
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import ConfigError, PublishError, ReconError
from shared.logging import configure_logging, redact_text
from shared.messaging import Names, connect, open_channel
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
    """Show the order REFERENCE with its full transition timeline and causes."""
    found = run(_load_order(runtime.settings(), reference))
    if found is None:
        raise fail(f"order {reference} not found")
    order, transitions = found
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


async def _load_order(
    settings: WorkerSettings, reference: str
) -> tuple[Order, list[OrderTransition]] | None:
    async with database(settings) as sessions, sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        if order is None:
            return None
        rows = await session.scalars(
            select(OrderTransition)
            .where(OrderTransition.order_id == order.id)
            .order_by(OrderTransition.id)
        )
        return order, list(rows)


@orders_group.command("reconcile")
@click.argument("reference")
@pass_runtime
def orders_reconcile(runtime: Runtime, reference: str) -> None:
    """Re-poll the execution of order REFERENCE now and apply it (cause: operator)."""
    outcome = run(_reconcile(runtime.settings(), reference))
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
            return f"order {reference} not found"
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
            return f"order {reference} not found"
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
    """List orders in needs_review: Payrails could not say whether money moved."""
    orders = run(_needs_review(runtime.settings()))
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
    click.echo(f"{len(orders)} order(s) in needs_review", err=True)


async def _needs_review(settings: WorkerSettings) -> list[Order]:
    async with database(settings) as sessions, sessions() as session:
        rows = await session.scalars(
            select(Order).where(Order.status == OrderStatus.NEEDS_REVIEW).order_by(Order.updated_at)
        )
        return list(rows)


@review_group.command("resolve")
@click.argument("reference")
@click.option(
    "--verdict",
    type=click.Choice([verdict.value for verdict in sorted(REVIEW_VERDICTS)]),
    required=True,
    help="What the PSP confirmed: the money moved (paid) or it did not (payment_failed).",
)
@click.option("--note", required=True, help="Why: the evidence, e.g. a PSP reference.")
@pass_runtime
def review_resolve(runtime: Runtime, reference: str, verdict: str, note: str) -> None:
    """Close a needs_review order with a person's verdict; announces it like any transition."""
    problem = run(_resolve(runtime.settings(), reference, OrderStatus(verdict), note))
    if problem is not None:
        raise fail(problem)
    click.echo(f"{reference}: needs_review -> {verdict}")


async def _resolve(
    settings: WorkerSettings, reference: str, verdict: OrderStatus, note: str
) -> str | None:
    async with database(settings) as sessions, sessions.begin() as session:
        order = await lock_order(session, reference=reference)
        if order is None:
            return f"order {reference} not found"
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
