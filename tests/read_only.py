"""Make the run's database refuse writes (SQLSTATE 25006), as a standby or a demoted primary does.

``ALTER DATABASE ... SET default_transaction_read_only`` reaches new connections only: connections
made while it is on stay read-only after it is switched off, just as a pool keeps connections to
a primary that has since become a standby, or to the node a managed service's writer endpoint
named before its failover. The shared server itself is untouched: only the run's database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from tests.conftest import ServiceUrls, admin_sql


@dataclass(frozen=True)
class ReadOnlySwitch:
    """Switch the database at ``database_url`` read-only (``on``) and back (``off``)."""

    database_url: str
    service_urls: ServiceUrls

    @property
    def name(self) -> str:
        name = make_url(self.database_url).database
        assert name is not None
        return name

    def on(self) -> None:
        self._alter("SET default_transaction_read_only = on")

    def off(self) -> None:
        self._alter("RESET default_transaction_read_only")

    def _alter(self, change: str) -> None:
        admin_sql(self.service_urls, f'ALTER DATABASE "{self.name}" {change}')
