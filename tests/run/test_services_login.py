"""``make run`` against servers that answer but refuse it: what to set, no traceback.

The real PostgreSQL and RabbitMQ of the test run, with credentials they refuse or a role without
the rights it needs; the password must not appear in anything the runner prints.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from tests.conftest import Role, with_credentials
from tests.run.stack import stack_env, start


def refused_run(base_env: dict[str, str], name: str, password: str | None, **variables: str) -> str:
    """``make run`` with ``variables`` replacing the run's service URLs, which must end it.

    Checks the refusal itself (exit 2, no traceback, ``password``, if any, never printed) and
    returns the runner's own lines, without their prefix, for the test's message checks.
    """
    stack = start({**stack_env(base_env, "login"), **variables})
    code = stack.wait_exit()
    stack.save_log(f"make-run-refused-{name}")
    output = "\n".join(stack.lines)
    assert code == 2, output
    assert "Traceback" not in output
    assert password is None or password not in output
    return "\n".join(line.split("| ", 1)[1] for line in stack.lines if line.startswith("run "))


def test_a_broker_refusing_the_login_names_amqp_url_and_hides_the_password(
    base_env: dict[str, str],
) -> None:
    password = f"wrong{uuid.uuid4().hex}"
    amqp_url = with_credentials(base_env["AMQP_URL"], "guest", password)
    said = refused_run(base_env, "amqp-login", password, AMQP_URL=amqp_url)
    parts = urlsplit(amqp_url)
    assert (
        f'RabbitMQ at {parts.hostname}:{parts.port} (AMQP_URL) refused the login of user "guest"'
        in said
    ), said
    assert "Set AMQP_URL to a user and password this broker accepts" in said, said


def test_a_server_refusing_the_login_names_database_url_and_hides_the_password(
    base_env: dict[str, str],
) -> None:
    """Even trust authentication refuses a role that does not exist."""
    user, password = f"nobody_{uuid.uuid4().hex[:8]}", f"wrong{uuid.uuid4().hex}"
    database_url = with_credentials(base_env["DATABASE_URL"], user, password)
    said = refused_run(base_env, "database-login", password, DATABASE_URL=database_url)
    parts = urlsplit(database_url)
    assert (
        f"PostgreSQL at {parts.hostname}:{parts.port} (DATABASE_URL) refused the login of "
        f'user "{user}" to database "postgres": role "{user}" does not exist'
    ) in said, said
    assert "Set DATABASE_URL to a user and password this server accepts" in said, said


def test_a_broker_refusing_the_virtual_host_names_amqp_url(base_env: dict[str, str]) -> None:
    vhost = f"missing-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(base_env["AMQP_URL"])
    amqp_url = parts._replace(path=f"/{vhost}").geturl()
    said = refused_run(base_env, "amqp-vhost", None, AMQP_URL=amqp_url)
    assert (
        f"RabbitMQ at {parts.hostname}:{parts.port} (AMQP_URL) refused user "
        f'"{parts.username}" the virtual host "{vhost}"'
    ) in said, said


def test_a_user_without_createdb_is_told_how_to_create_the_missing_database(
    base_env: dict[str, str], unprivileged_role: Role
) -> None:
    name = f"recon_missing_{uuid.uuid4().hex[:8]}"
    database_url = unprivileged_role.url(base_env["DATABASE_URL"], name)
    said = refused_run(
        base_env, "no-createdb", unprivileged_role.password, DATABASE_URL=database_url
    )
    parts = urlsplit(database_url)
    assert (
        f'PostgreSQL at {parts.hostname}:{parts.port} (DATABASE_URL) has no database "{name}", '
        f'and user "{unprivileged_role.name}" may not create it: permission denied to create '
        "database"
    ) in said, said
    assert f"-O {unprivileged_role.name} {name}" in said, said


def test_a_user_who_may_not_create_tables_is_told_to_own_the_database(
    base_env: dict[str, str], unprivileged_role: Role, foreign_database: str
) -> None:
    database_url = unprivileged_role.url(base_env["DATABASE_URL"], foreign_database)
    said = refused_run(
        base_env, "no-create-table", unprivileged_role.password, DATABASE_URL=database_url
    )
    assert (
        f'refused user "{unprivileged_role.name}" the migrations of database '
        f'"{foreign_database}": permission denied for schema public'
    ) in said, said
    owner = f'ALTER DATABASE "{foreign_database}" OWNER TO "{unprivileged_role.name}"'
    assert owner in said, said
