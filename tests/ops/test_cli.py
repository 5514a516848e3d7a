"""The ``recon`` CLI against the real broker, database and sandbox.

Commands run through click's CliRunner in a thread: the CLI runs its own event loop there, while
this test's loop keeps serving the in-process sandbox.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.control_client import SandboxHandle
from shared.commands import AuthorizeCommand
from shared.db.models import IdempotencyKey, Order, OutboxMessage
from shared.events import derive_event_id
from shared.messaging import HDR_ATTEMPT, HDR_EVENT_ID, HDR_EVENT_NAME, HDR_RECEIVED_AT
from tests.ops.conftest import Invoke
from tests.ops.shop import APPROVE, Shop, order_status, transitions_of
from tests.waiting import wait_until
from worker.cli import cli
from worker.consumer import EventsConsumer
from worker.deps import Deps
from worker.retry import dead_letter

# The console script pip installed for ``recon = "worker.cli:main"``, beside this interpreter.
RECON_SCRIPT = Path(sys.executable).parent / "recon"


async def dead_letter_webhook(deps: Deps, sandbox: SandboxHandle, execution_id: str) -> str:
    """Route the webhook the sandbox dropped through the events queue into the DLQ, as the worker
    does when its retries run out; return the dead letter's id."""
    (delivery,) = await sandbox.deliveries(execution_id=execution_id)
    body = json.dumps(delivery["body"]).encode()
    event_id = derive_event_id(delivery["body"])
    headers = {
        HDR_EVENT_NAME: delivery["event"],
        HDR_EVENT_ID: event_id,
        HDR_RECEIVED_AT: datetime.now(UTC).isoformat(),
        HDR_ATTEMPT: 3,
    }
    exchange = await deps.channel.get_exchange(deps.names.webhooks_exchange)
    message = aio_pika.Message(body, headers=headers, message_id=event_id)
    await exchange.publish(message, delivery["event"], mandatory=True)
    queue = await deps.channel.get_queue(deps.names.events_queue)
    incoming = await queue.get(timeout=5)
    assert incoming is not None
    await dead_letter(
        incoming, deps, source_queue=deps.names.events_queue, reason="payrails_unavailable"
    )
    await incoming.ack()
    return event_id


async def ready(connection: AbstractRobustConnection, queue: str) -> int:
    """Messages ready on ``queue`` now. A fresh channel each time: a robust channel answers a
    passive declare from its cache, with the count of the first declare."""
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


@pytest.fixture
async def events_consumer(
    ops_deps: Deps, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[Callable[[], Coroutine[Any, Any, None]]]:
    """Starts the real webhook-events consumer on demand; stops it afterwards."""
    channel = await amqp_connection.channel(publisher_confirms=False)
    consumer = EventsConsumer(ops_deps, channel)
    started = False

    async def start() -> None:
        nonlocal started
        await consumer.start()
        started = True

    yield start
    if started:
        await consumer.stop()
    await channel.close()


async def wait_for_status(
    sessions: async_sessionmaker[AsyncSession], reference: str, status: str
) -> None:
    async def there() -> bool:
        return await order_status(sessions, reference) == status

    await wait_until(there)


async def test_dlq_list_shows_each_dead_letter_and_leaves_it_in_the_queue(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sandbox: SandboxHandle,
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference, execution_id = await shop.pay(APPROVE)
    letter_id = await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "list")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(letter_id)]
    for column in (
        "payrails_unavailable",
        "3",
        "executionActionCompleted",
        execution_id,
        reference,
    ):
        assert column in row.split()
    assert await ready(amqp_connection, ops_deps.names.dead_letters_queue) == 1


async def test_dlq_list_shows_how_long_ago_each_letter_failed(
    recon: Invoke, ops_deps: Deps, shop: Shop, sandbox: SandboxHandle
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    letter_id = await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "list")

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[3] == "AGE"
    (row,) = [line for line in rows if line.startswith(letter_id)]
    assert re.fullmatch(r"\d+d\d+h|\d+h\d+m|\d+m\d+s|\d+s", row.split()[3])


async def test_dlq_replay_dry_run_labels_its_progress_on_stderr_only(
    recon: Invoke, ops_deps: Deps, shop: Shop, sandbox: SandboxHandle
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "replay", "--all", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "re-polling Payrails" in result.stderr
    assert "re-polling Payrails" not in result.stdout


async def test_dlq_list_labels_its_progress_on_stderr_only(
    recon: Invoke, ops_deps: Deps, shop: Shop, sandbox: SandboxHandle
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "list")

    assert result.exit_code == 0, result.output
    assert "reading dead letters" in result.stderr
    assert "reading dead letters" not in result.stdout


async def test_dlq_replay_labels_its_progress_on_stderr_only(
    recon: Invoke, ops_deps: Deps, shop: Shop, sandbox: SandboxHandle
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    letter_id = await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "replay", "--id", letter_id)

    assert result.exit_code == 0, result.output
    assert "replaying" in result.stderr
    assert "replaying" not in result.stdout
    assert f"{letter_id}: replayed to" in result.stdout


async def test_dlq_replay_dry_run_prints_the_change_and_changes_nothing(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sandbox: SandboxHandle,
    sessions: async_sessionmaker[AsyncSession],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference, execution_id = await shop.pay(APPROVE)
    letter_id = await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "replay", "--all", "--dry-run")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(letter_id)]
    assert row.split()[1:4] == [reference, "authorizing", "paid"]
    assert await ready(amqp_connection, ops_deps.names.dead_letters_queue) == 1
    assert await ready(amqp_connection, ops_deps.names.events_queue) == 0
    assert await order_status(sessions, reference) == "authorizing"
    assert await transitions_of(sessions, reference) == []


async def test_dlq_replay_republishes_and_the_worker_reconciles(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sandbox: SandboxHandle,
    sessions: async_sessionmaker[AsyncSession],
    events_consumer: Callable[[], Coroutine[Any, Any, None]],
    amqp_connection: AbstractRobustConnection,
) -> None:
    reference, execution_id = await shop.pay(APPROVE)
    letter_id = await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "replay", "--id", letter_id)

    assert result.exit_code == 0, result.output
    assert f"{letter_id}: replayed to {ops_deps.names.events_queue}" in result.stdout
    assert await ready(amqp_connection, ops_deps.names.dead_letters_queue) == 0
    queue = await ops_deps.channel.get_queue(ops_deps.names.events_queue)
    replayed = await queue.get(timeout=5)
    assert replayed is not None
    assert replayed.headers[HDR_ATTEMPT] == 0
    await replayed.nack(requeue=True)
    await events_consumer()
    await wait_for_status(sessions, reference, "paid")
    assert await transitions_of(sessions, reference) == [("authorizing", "paid", "webhook")]


async def test_dlq_replay_of_an_unknown_id_fails_and_keeps_the_queue(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sandbox: SandboxHandle,
    amqp_connection: AbstractRobustConnection,
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    await dead_letter_webhook(ops_deps, sandbox, execution_id)

    result = await recon("dlq", "replay", "--id", "no-such-letter")

    assert result.exit_code == 1
    assert await ready(amqp_connection, ops_deps.names.dead_letters_queue) == 1


async def test_dlq_purge_asks_first_and_deletes_with_yes(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sandbox: SandboxHandle,
    amqp_connection: AbstractRobustConnection,
) -> None:
    _, execution_id = await shop.pay(APPROVE)
    await dead_letter_webhook(ops_deps, sandbox, execution_id)

    declined = await recon("dlq", "purge", stdin="n\n")
    count_after_decline = await ready(amqp_connection, ops_deps.names.dead_letters_queue)
    purged = await recon("dlq", "purge", "--yes")

    assert declined.exit_code == 1
    assert count_after_decline == 1
    assert purged.exit_code == 0
    assert "purged 1 message(s)" in purged.stdout
    assert await ready(amqp_connection, ops_deps.names.dead_letters_queue) == 0


async def test_orders_reconcile_repolls_now_and_show_prints_the_timeline(
    recon: Invoke, ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.pay(APPROVE)

    reconciled = await recon("orders", "reconcile", reference)
    shown = await recon("orders", "show", reference)

    assert reconciled.exit_code == 0, reconciled.output
    assert f"{reference}: authorizing -> paid" in reconciled.stdout
    assert await transitions_of(sessions, reference) == [("authorizing", "paid", "operator")]
    assert shown.exit_code == 0, shown.output
    assert "status:         paid" in shown.stdout
    assert any(
        line.split()[1:4] == ["authorizing", "paid", "operator"]
        for line in shown.stdout.splitlines()
    )


async def test_review_list_shows_orders_in_needs_review(
    recon: Invoke, ops_deps: Deps, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.pay(APPROVE)
    async with sessions.begin() as session:
        await session.execute(
            update(Order)
            .where(Order.reference == reference)
            .values(status="needs_review", failure_reason="ProviderTimeout")
        )

    result = await recon("review", "list")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(reference)]
    assert "ProviderTimeout" in row


async def test_review_resolve_closes_a_needs_review_order_and_announces_it(
    recon: Invoke, shop: Shop, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reference, _ = await shop.pay(APPROVE)
    async with sessions.begin() as session:
        await session.execute(
            update(Order).where(Order.reference == reference).values(status="needs_review")
        )

    resolved = await recon(
        "review", "resolve", reference, "--verdict", "paid", "--note", "PSP ref 123 captured"
    )
    again = await recon("review", "resolve", reference, "--verdict", "paid", "--note", "twice")

    assert resolved.exit_code == 0, resolved.output
    assert again.exit_code == 1
    assert "not needs_review" in again.output
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.reference == reference))
        assert order is not None
        assert order.status == "paid"
        routing_keys = await session.scalars(
            select(OutboxMessage.routing_key).where(OutboxMessage.order_id == order.id)
        )
        assert "order.paid" in set(routing_keys)


async def test_unknown_orders_and_a_replay_without_a_target_exit_2(recon: Invoke) -> None:
    shown = await recon("orders", "show", "no-such-order")
    reconciled = await recon("orders", "reconcile", "no-such-order")
    replay = await recon("dlq", "replay")

    assert (shown.exit_code, reconciled.exit_code, replay.exit_code) == (2, 2, 2)
    assert "order no-such-order not found" in shown.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "replay"],
        ["dlq", "purge"],
        ["orders"],
        ["orders", "show"],
        ["orders", "reconcile"],
        ["orders", "capture"],
        ["orders", "cancel"],
        ["orders", "refund"],
        ["review"],
        ["review", "list"],
        ["review", "resolve"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


def run_recon_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``recon`` console script, as an operator would."""
    return subprocess.run(
        [str(RECON_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_the_installed_recon_script_lists_every_command_group(tmp_path: Path) -> None:
    result = run_recon_script("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: recon ")
    commands = result.stdout.split("\nCommands:\n", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert listed == set(cli.commands) == {"dlq", "orders", "review"}


def test_the_installed_recon_script_refuses_real_payrails_without_the_client_secret(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYRAILS_")}
    env |= {
        "PAYRAILS_BASE_URL": "https://api.payrails.io",
        "PAYRAILS_WEBHOOK_SECRETS": "live-webhook-secret",
    }

    result = run_recon_script("review", "list", cwd=tmp_path, env=env)

    assert result.returncode == 1
    assert "configuration error" in result.stderr
    assert "so PAYRAILS_CLIENT_SECRET must be set" in result.stderr


def test_an_unreachable_broker_is_exit_1_with_a_message_and_no_password() -> None:
    result = CliRunner().invoke(
        cli, ["dlq", "list"], env={"AMQP_URL": "amqp://ops:hunter2@127.0.0.1:1/"}
    )

    assert result.exit_code == 1
    assert "AMQPConnectionError" in result.output
    assert "hunter2" not in result.output


async def test_a_message_the_broker_dead_lettered_is_replayed_to_its_x_death_queue(
    recon: Invoke, ops_deps: Deps, amqp_connection: AbstractRobustConnection
) -> None:
    names = ops_deps.names
    await ops_deps.channel.default_exchange.publish(
        aio_pika.Message(b'{"event": "executionActionCompleted"}', message_id="poison-1"),
        names.events_queue,
    )
    queue = await ops_deps.channel.get_queue(names.events_queue)
    incoming = await queue.get(timeout=5)
    assert incoming is not None
    await incoming.reject(requeue=False)  # the queue's dead-letter exchange takes it

    async def dead_lettered() -> bool:
        return await ready(amqp_connection, names.dead_letters_queue) > 0

    await wait_until(dead_lettered, timeout=5)

    listed = await recon("dlq", "list")
    replayed = await recon("dlq", "replay", "--id", "poison-1")

    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("poison-1")]
    assert row.split()[1] == "rejected"
    assert row.split()[-1] == names.events_queue
    assert replayed.exit_code == 0, replayed.output
    assert await ready(amqp_connection, names.events_queue) == 1


async def dead_letter_authorize(deps: Deps, reference: str, execution_id: str) -> str:
    """Route an authorize command through the authorize queue into the DLQ; return its id."""
    command = AuthorizeCommand(order_reference=reference, execution_id=execution_id)
    message = aio_pika.Message(command.to_body(), message_id=command.message_id)
    await deps.channel.default_exchange.publish(message, deps.names.authorize_queue)
    queue = await deps.channel.get_queue(deps.names.authorize_queue)
    incoming = await queue.get(timeout=5)
    assert incoming is not None
    await dead_letter(
        incoming, deps, source_queue=deps.names.authorize_queue, reason="payrails_unavailable"
    )
    await incoming.ack()
    return command.message_id


async def test_dlq_replay_dry_run_predicts_the_authorize_of_a_dead_lettered_command(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.unpaid("authorizing")
    assert execution_id is not None
    letter_id = await dead_letter_authorize(ops_deps, reference, execution_id)

    result = await recon("dlq", "replay", "--all", "--dry-run")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(letter_id)]
    assert "would authorize at Payrails (12.50 EUR)" in row
    assert await order_status(sessions, reference) == "authorizing"


async def test_dlq_replay_dry_run_skips_an_authorize_command_whose_authorize_completed(
    recon: Invoke,
    ops_deps: Deps,
    shop: Shop,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference, execution_id = await shop.unpaid("authorizing")
    assert execution_id is not None
    async with sessions.begin() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.order_id
                == select(Order.id).where(Order.reference == reference).scalar_subquery()
            )
            .values(completed_at=func.now())
        )
    letter_id = await dead_letter_authorize(ops_deps, reference, execution_id)

    result = await recon("dlq", "replay", "--all", "--dry-run")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(letter_id)]
    assert "skipped (authorize already completed)" in row
