"""What ``make run`` prints when PostgreSQL or RabbitMQ answers but will not let it in.

Each message names the server, the variable to change (DATABASE_URL / AMQP_URL) and an example,
and never a password: callers pass reasons through ``redact`` first.
"""

from __future__ import annotations

import getpass
import shlex
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import URL

# What libpq says when the server itself refused the login: no point in retrying that.
LOGIN_REFUSED = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "password",
    "permission denied",
)


def redact(text: str, *urls: str) -> str:
    """``text`` with the password of each URL masked, as written and percent-decoded."""
    for url in urls:
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
    return text


def server_reason(message: str) -> str:
    """The server's own words from a libpq connection error (its FATAL), else the last line."""
    if "FATAL:" in message:
        message = message.rpartition("FATAL:")[2]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines) or message


def _postgres_at(url: URL) -> str:
    return f"PostgreSQL at {url.host or '127.0.0.1'}:{url.port or 5432} (DATABASE_URL)"


def _postgres_user(url: URL) -> str:
    return f'user "{url.username}"' if url.username else "the default user (your login name)"


def postgres_login_refused(url: URL, reason: str) -> str:
    """What to do when PostgreSQL answers but refuses DATABASE_URL's user."""
    name = url.database or "postgres"
    example = f"postgresql+psycopg://USER:PASSWORD@{url.host or '127.0.0.1'}:{url.port or 5432}"
    return "\n".join(
        [
            f"{_postgres_at(url)} refused the login of {_postgres_user(url)} "
            f'to database "postgres": {reason}',
            "Set DATABASE_URL to a user and password this server accepts, then run `make run` "
            "again, e.g.",
            f"  DATABASE_URL={example}/{name} make run",
            f'(`make run` connects to the database "postgres" to create "{name}" when it is '
            "missing.)",
        ]
    )


def not_ready(server: str, variable: str, reason: str, waited_seconds: float) -> str:
    """What to do when a server (``_postgres_at`` / ``_rabbitmq_at``) never took connections."""
    return "\n".join(
        [
            f"{server} still refused connections after {waited_seconds:.0f} s: {reason}",
            f"Check that server (its log), or set {variable} to one that is running, "
            "then run `make run` again.",
        ]
    )


def postgres_not_ready(url: URL, reason: str, waited_seconds: float) -> str:
    return not_ready(_postgres_at(url), "DATABASE_URL", reason, waited_seconds)


def _rabbitmq_at(url: str) -> str:
    parts = urlsplit(url)
    return f"RabbitMQ at {parts.hostname or '127.0.0.1'}:{parts.port or 5672} (AMQP_URL)"


def _rabbitmq_user(url: str) -> str:
    return f'user "{unquote(urlsplit(url).username or "guest")}"'


def rabbitmq_login_refused(url: str, reason: str) -> str:
    """What to do when RabbitMQ answers but refuses AMQP_URL's user."""
    parts = urlsplit(url)
    example = f"amqp://USER:PASSWORD@{parts.hostname or '127.0.0.1'}:{parts.port or 5672}/"
    return "\n".join(
        [
            f"{_rabbitmq_at(url)} refused the login of {_rabbitmq_user(url)}: {reason}",
            "Set AMQP_URL to a user and password this broker accepts, then run `make run` "
            "again, e.g.",
            f"  AMQP_URL={example} make run",
            "(RabbitMQ's guest user may log in from localhost only. To add a user: "
            "sudo rabbitmqctl add_user USER PASSWORD && "
            "sudo rabbitmqctl set_permissions -p / USER '.*' '.*' '.*')",
        ]
    )


def rabbitmq_vhost_refused(url: str) -> str:
    """What to do when RabbitMQ accepts the login but not AMQP_URL's virtual host."""
    vhost = unquote(urlsplit(url).path[1:]) or "/"
    return "\n".join(
        [
            f'{_rabbitmq_at(url)} refused {_rabbitmq_user(url)} the virtual host "{vhost}": '
            "it does not exist, or the user may not use it.",
            f"Create it and let the user in (sudo rabbitmqctl add_vhost {shlex.quote(vhost)} && "
            f"sudo rabbitmqctl set_permissions -p {shlex.quote(vhost)} USER '.*' '.*' '.*'), "
            "or set AMQP_URL to a virtual host that exists, then run `make run` again.",
        ]
    )


def rabbitmq_not_ready(url: str, reason: str, waited_seconds: float) -> str:
    return not_ready(_rabbitmq_at(url), "AMQP_URL", reason, waited_seconds)


def _database_and_owner(url: URL) -> tuple[str, str]:
    """DATABASE_URL's database and the user who should own it (libpq's default user if none)."""
    return url.database or "postgres", url.username or getpass.getuser()


def postgres_may_not_create(url: URL, reason: str) -> str:
    """What to do when DATABASE_URL's user may not create its missing database."""
    name, owner = _database_and_owner(url)
    return "\n".join(
        [
            f'{_postgres_at(url)} has no database "{name}", and {_postgres_user(url)} may not '
            f"create it: {reason}",
            "Create it as a superuser, owned by that user, then run `make run` again, e.g.",
            f"  createdb -h {url.host or '127.0.0.1'} -p {url.port or 5432} -U postgres "
            f"-O {shlex.quote(owner)} {shlex.quote(name)}",
            "or set DATABASE_URL to a user that has CREATEDB.",
        ]
    )


def postgres_may_not_migrate(url: URL, reason: str) -> str:
    """What to do when DATABASE_URL's user may not create the service's tables."""
    name, owner = _database_and_owner(url)
    return "\n".join(
        [
            f"{_postgres_at(url)} refused {_postgres_user(url)} the migrations of database "
            f'"{name}": {reason}',
            "The user needs to own the database (or its schema public), e.g. as a superuser:",
            f'  ALTER DATABASE "{name}" OWNER TO "{owner}"; '
            f'ALTER SCHEMA public OWNER TO "{owner}";',
            "then run `make run` again.",
        ]
    )
