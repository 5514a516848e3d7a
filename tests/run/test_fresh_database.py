"""``make run`` on a server without its database: created, migrated to head, topology declared."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import aio_pika
import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from shared.db.migrate import alembic_config
from shared.messaging import Names, connect
from tests.conftest import ServiceUrls, admin_sql, drop_database
from tests.run.stack import delete_stack_topology, launch, stack_env
from tests.settings import Settings


def plain(url: str) -> str:
    """The URL psycopg takes: no SQLAlchemy driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
def missing_database(base_env: dict[str, str], service_urls: ServiceUrls) -> Iterator[str]:
    """DATABASE_URL naming a database that does not exist yet; dropped afterwards."""
    name = f"recon_fresh_{uuid.uuid4().hex[:8]}"
    yield make_url(base_env["DATABASE_URL"]).set(database=name).render_as_string(False)
    admin_sql(service_urls, drop_database(name))


def alembic_revision(database_url: str) -> str | None:
    try:
        with psycopg.connect(plain(database_url)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else str(row[0])


def missing_queues(env: dict[str, str]) -> list[str]:
    """The stack's work and dead-letter queues that the broker does not have."""
    names = Names.from_settings(Settings.from_env(env))
    queues = [names.events_queue, names.authorize_queue, names.dead_letters_queue]

    async def check() -> list[str]:
        missing = []
        async with await connect(env["AMQP_URL"]) as connection:
            for queue in queues:
                channel = await connection.channel()  # a failed passive declare closes it
                try:
                    await channel.declare_queue(queue, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    missing.append(queue)
        return missing

    # A thread of its own: the session's event loop belongs to pytest-asyncio.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, check()).result()


def test_make_run_creates_a_missing_database_migrates_it_to_head_and_declares_the_queues(
    base_env: dict[str, str], missing_database: str
) -> None:
    env = stack_env({**base_env, "DATABASE_URL": missing_database}, "fresh")
    head = ScriptDirectory.from_config(alembic_config(missing_database)).get_current_head()
    try:
        stack = launch(env)
        try:
            name = make_url(missing_database).database
            assert f"run      | creating database {name}" in stack.lines, stack.tail()
            assert head is not None
            assert alembic_revision(missing_database) == head
            assert missing_queues(env) == []
        finally:
            stack.stop()
            stack.save_log("make-run-fresh-database")
    finally:
        delete_stack_topology(env)
