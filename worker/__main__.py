"""``python -m worker``: every component (events, authorize, merchant, operations, outbox,
sweeper), or some.

Start-up opens, in order, the database engine, the AMQP connection, the confirm channel (and
the topology), the Payrails client and the health server; SIGTERM stops the consumers (cancel,
in-flight work gets WORKER_SHUTDOWN_GRACE_SECONDS, the rest is requeued), ends the background
loops, and the AsyncExitStack closes everything in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Protocol

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustConnection

from shared.config import WorkerSettings
from shared.db.session import create_engine, create_sessionmaker
from shared.errors import ConfigError
from shared.event_loop import new_event_loop
from shared.logging import configure_logging
from shared.messaging import (
    Names,
    connect_robust,
    declare_topology,
    open_channel,
    reconnect_backoff,
)
from shared.payrails.client import open_payrails_client
from worker.authorize import handle_authorize
from worker.consumer import EventsConsumer, HandlerConsumer
from worker.deps import Deps
from worker.gauges import run_gauges
from worker.health import amqp_check, database_check, start_health_server
from worker.merchant import handle_merchant_command
from worker.operations import handle_operation
from worker.outbox import run_outbox_relay
from worker.preauthorize import PreAuthorizeHook, load_hook
from worker.sweeper import run_sweeper

log = structlog.get_logger("worker")
COMPONENTS = ("events", "authorize", "merchant", "operations", "outbox", "sweeper")
CONSUMERS = ("events", "authorize", "merchant", "operations")
Loop = Callable[[Deps, asyncio.Event], Coroutine[None, None, None]]

# Background loops, by component: each runs until the stop event is set.
LOOPS: dict[str, Loop] = {"outbox": run_outbox_relay, "sweeper": run_sweeper}


class Consumer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def build_consumer(
    name: str,
    deps: Deps,
    channel: aio_pika.abc.AbstractChannel,
    hook: PreAuthorizeHook | None = None,
) -> Consumer:
    """The queue consumer for ``name`` (one of CONSUMERS), on its own channel."""
    if name == "events":
        return EventsConsumer(deps, channel)
    if name == "merchant":
        return HandlerConsumer(
            deps, channel, deps.names.merchant_commands_queue, handle_merchant_command
        )
    if name == "operations":
        return HandlerConsumer(deps, channel, deps.names.operations_queue, handle_operation)
    handler = functools.partial(handle_authorize, hook=hook)
    return HandlerConsumer(deps, channel, deps.names.authorize_queue, handler)


def parse_components(raw: str | None) -> tuple[str, ...]:
    """``--only events,outbox`` as a tuple; every component when not given."""
    if not raw:
        return COMPONENTS
    chosen = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(COMPONENTS))
    if unknown or not chosen:
        raise ValueError(f"unknown components {unknown}; choose from {', '.join(COMPONENTS)}")
    return chosen


async def open_deps(
    stack: AsyncExitStack, settings: WorkerSettings
) -> tuple[Deps, AbstractRobustConnection]:
    """Open every shared resource, registering each one's close on ``stack``."""
    engine = create_engine(settings)
    stack.push_async_callback(engine.dispose)
    # aio-pika sleeps one fixed reconnect_interval between attempts and offers no hook to vary
    # it per attempt; drawing that interval once per process, jittered, still keeps workers cut
    # off together from reconnecting in step.
    connection = await connect_robust(
        settings.amqp_url.reveal(),
        name="worker",
        reconnect_interval=next(reconnect_backoff(settings).delays()),
    )
    stack.push_async_callback(connection.close)
    channel = await open_channel(connection)
    stack.push_async_callback(channel.close)
    names: Names = await declare_topology(channel, settings)
    payrails = await stack.enter_async_context(open_payrails_client(settings))
    deps = Deps(settings, names, create_sessionmaker(engine), payrails, channel)
    return deps, connection


async def run(
    settings: WorkerSettings,
    components: Sequence[str],
    stop: asyncio.Event | None = None,
    *,
    hook: PreAuthorizeHook | None = None,
) -> None:
    """Run the chosen components until ``stop`` is set (SIGTERM/SIGINT set it).

    ``hook`` is the pre-authorize hook; when not given it is loaded from PRE_AUTHORIZE_HOOK.
    """
    stop = stop or asyncio.Event()
    hook = hook or load_hook(settings.pre_authorize_hook)
    async with AsyncExitStack() as stack:
        deps, connection = await open_deps(stack, settings)
        checks = {"amqp": amqp_check(connection), "database": database_check(deps.sessions)}
        runner = await start_health_server(settings, checks)
        stack.push_async_callback(runner.cleanup)
        consumers: list[Consumer] = []
        for name in (c for c in components if c in CONSUMERS):
            channel = await connection.channel(publisher_confirms=False)
            stack.push_async_callback(channel.close)
            consumer = build_consumer(name, deps, channel, hook)
            await consumer.start()
            consumers.append(consumer)
        tasks = [
            asyncio.create_task(LOOPS[name](deps, stop), name=name)
            for name in components
            if name in LOOPS
        ]
        tasks.append(asyncio.create_task(run_gauges(connection, deps, stop), name="gauges"))
        log.info("worker.started", components=list(components))
        await stop.wait()
        log.info("worker.stopping")
        for consumer in consumers:
            await consumer.stop()
        await _finish(tasks, settings.worker_shutdown_grace_seconds)
    log.info("worker.stopped")


async def _finish(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Let background loops notice the stop event; cancel whatever outlives the grace period."""
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def serve(
    settings: WorkerSettings, components: Sequence[str], hook: PreAuthorizeHook
) -> None:
    """``run`` with SIGTERM and SIGINT wired to the stop event."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, components, stop, hook=hook)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(COMPONENTS)}")
    args = parser.parse_args(argv)
    try:
        components = parse_components(args.only)
        # The worker calls Payrails and never verifies a webhook (the ingress did, before
        # publishing): its settings hold the client secret, not the webhook secrets.
        settings = WorkerSettings.from_env(os.environ)
        hook = load_hook(settings.pre_authorize_hook)  # once, so a bad path stops start-up
    except (ValueError, ConfigError) as exc:
        sys.exit(f"configuration error: {exc}")
    configure_logging(settings.log_level, json=settings.log_format == "json")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(settings, components, hook))


if __name__ == "__main__":
    main()
