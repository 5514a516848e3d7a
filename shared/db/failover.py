"""Database errors that mean "this is not (or no longer) the primary", not "this row is bad".

When the primary fails over, a client sees one of: its connection reset or closed
(``OperationalError``), the server shutting down (SQLSTATE 57P01 admin_shutdown, 57P02
crash_shutdown, 57P03 cannot_connect_now), no host of a multi-host URL accepting writes yet
(``OperationalError`` at connect), or, on a connection to a node that has become a standby or
to a writer endpoint whose DNS has not moved yet, a write refused with 25006
read_only_sql_transaction. Each is transient: hold the work and try again, never dead-letter.

A pooled connection that got 25006 will get it forever; so such errors are reported to
SQLAlchemy as disconnects, which discards that connection and every other one the pool made
before it: the next checkout connects afresh and finds the new primary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.errors import TransientError

# read_only_sql_transaction, admin_shutdown, crash_shutdown, cannot_connect_now
FAILOVER_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})
CONNECTION_EXCEPTION_CLASS = "08"  # connection_exception and its subclasses


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a DBAPI error, or of the one a SQLAlchemy error wraps."""
    original: Any = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    state = getattr(original, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_failover_error(exc: BaseException) -> bool:
    """True when the SQLSTATE says the server is not a primary (any more) or is going away."""
    state = sqlstate_of(exc)
    return state is not None and (
        state in FAILOVER_SQLSTATES or state.startswith(CONNECTION_EXCEPTION_CLASS)
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """True for errors that say the database (not this message or request) is the problem."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return is_failover_error(exc)


def drop_connections_on_failover(engine: AsyncEngine) -> None:
    """Treat failover errors as disconnects: the pool drops its connections to the old primary."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _failover_is_a_disconnect(context: ExceptionContext) -> None:
        if context.original_exception is not None and is_failover_error(context.original_exception):
            context.is_disconnect = True


# What may say "retry later": a service's TransientError, a DBAPI error (is_transient tells which)
# or the pool's timeout, which is no DBAPI error. Catch these, then ask is_transient.
MAYBE_TRANSIENT: tuple[type[Exception], ...] = (
    TransientError,
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """A service error meant to be retried, or the database being unavailable (see above)."""
    return isinstance(exc, TransientError) or is_database_unavailable(exc)
