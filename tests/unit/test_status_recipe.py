"""The recipe in CONTRIBUTING.md ("Adding an order status") is true.

A status lives in three places: OrderStatus and its sets in shared/state_machine.py, the check
constraints a migration puts on the status columns, and the README's order states line. These
tests fail until all three agree, and while any other module keeps a status set of its own.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import state_machine
from shared.db.models import Base, Order, table_of
from shared.state_machine import RANK, ROUTING_KEY, OrderStatus
from tests.unit.test_schema import order_row

ROOT = Path(__file__).resolve().parents[2]
STATUS_COLUMNS = {
    "ck_orders_status": ("orders", "status"),
    "ck_order_transitions_from_status": ("order_transitions", "from_status"),
    "ck_order_transitions_to_status": ("order_transitions", "to_status"),
}
PRODUCTION_PACKAGES = ("ingress", "worker", "shared", "demoshop", "scripts")


def _status_sets() -> dict[str, frozenset[object]]:
    sets = {
        name: value
        for name, value in vars(state_machine).items()
        if isinstance(value, frozenset) and name.isupper()
    }
    return {**sets, "ROUTING_KEY": frozenset(ROUTING_KEY)}


async def test_the_database_check_constraints_list_exactly_the_order_statuses(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'c' AND conname = ANY(:names)"
            ),
            {"names": list(STATUS_COLUMNS)},
        )
        definitions: dict[str, str] = {name: definition for name, definition in rows}
    assert set(definitions) == set(STATUS_COLUMNS)
    for name, definition in definitions.items():
        assert set(re.findall(r"'([^']*)'", definition)) == set(OrderStatus), name


def test_the_models_declare_the_constraints_the_migrations_build() -> None:
    declared = {
        constraint.name: (table.name, next(iter(constraint.columns)).name)
        for table in Base.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint) and str(constraint.name).endswith("status")
    }
    assert declared == STATUS_COLUMNS


async def test_the_orders_table_refuses_a_status_the_state_machine_does_not_know(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(IntegrityError, match="ck_orders_status"):
        async with sessions.begin() as session:
            await session.execute(insert(table_of(Order)), [order_row(status="shipped")])


def test_every_status_has_a_rank() -> None:
    assert set(RANK) == set(OrderStatus)


def test_every_status_set_holds_only_order_statuses() -> None:
    sets = _status_sets()
    expected = {
        "TERMINAL",
        "STUCK",
        "UNRESOLVED",
        "AUTHORIZABLE",
        "RETRYABLE",
        "PAYABLE",
        "REVIEW_VERDICTS",
    }
    assert expected | {"ROUTING_KEY"} <= set(sets)
    for name, members in sets.items():
        assert members, name
        assert all(isinstance(member, OrderStatus) for member in members), name


def _literal_status_collections(path: Path) -> list[int]:
    """Lines of set, list and tuple literals in ``path`` that name an OrderStatus member."""

    def names_a_status(node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "OrderStatus"
        )

    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Set | ast.List | ast.Tuple) and any(map(names_a_status, node.elts))
    ]


def test_no_module_but_the_state_machine_defines_a_status_set() -> None:
    own = ROOT / "shared" / "state_machine.py"
    found = {
        str(path.relative_to(ROOT)): lines
        for package in PRODUCTION_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != own and (lines := _literal_status_collections(path))
    }
    assert found == {}


def test_the_readme_order_states_line_names_every_status() -> None:
    readme = (ROOT / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith("Order states:")]
    named = set(re.findall(r"[a-z_]+", line.removeprefix("Order states:")))
    assert set(OrderStatus) <= named
