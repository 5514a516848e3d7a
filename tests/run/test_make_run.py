"""``make run`` (scripts/run.py): every process healthy, clean stops, a dead process named."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from ingress.storefront import TEST_CARD_NOTE, TEST_CARDS
from scripts.services import is_reachable
from tests.run.stack import (
    STOP_TIMEOUT_SECONDS,
    RunningStack,
    delete_stack_topology,
    get_json,
    launch,
    request_once,
    stack_env,
    start,
)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def make_run(base_env: dict[str, str]) -> Iterator[RunningStack]:
    env = stack_env(base_env, "run")
    stack = launch(env)
    yield stack
    stack.stop()
    stack.save_log("make-run")
    delete_stack_topology(env)


def test_make_run_serves_every_process_and_exits_zero_on_sigint(make_run: RunningStack) -> None:
    for card in TEST_CARDS:
        assert any(card.number in line and card.behaviour in line for line in make_run.lines)
    assert any(TEST_CARD_NOTE in line for line in make_run.lines)
    urls = make_run.urls
    health = [
        f"{urls['Checkout API']}/healthz",
        f"{origin(urls['Webhook ingress'])}/healthz",
        f"{origin(urls['Worker metrics'])}/healthz",
        f"{urls['Payrails sandbox']}/healthz",
        f"{urls['Demo shop']}healthz",
    ]
    for url in health:
        status, _ = get_json(url)
        assert status == 200, url
    status, _ = get_json(f"{urls['Checkout API']}/orders/no-such-order")
    assert status == 404
    status, _ = get_json(urls["Demo shop"])
    assert status == 200
    assert f"Start here: open {urls['Demo shop']} and buy." in make_run.lines
    assert make_run.stop(signal.SIGINT) == 0, make_run.tail()
    assert make_run.lines[-1].endswith("| stopped")
    assert_no_child_was_killed(make_run)


def test_make_runs_demo_shop_sends_a_buyer_to_the_storefront_with_a_checkout_session(
    make_run: RunningStack,
) -> None:
    shop = make_run.urls["Demo shop"]
    status, location = request_once(
        f"{shop}buy", {"product": "headphones"}, {"Origin": origin(shop)}
    )
    assert status == 303, make_run.tail()
    assert location is not None
    assert location.startswith(f"{make_run.urls['Storefront']}checkout/start?session=")
    assert request_once(location) == (303, "/")


def test_make_run_exits_zero_on_sigterm(make_run: RunningStack) -> None:
    assert make_run.stop(signal.SIGTERM) == 0, make_run.tail()
    assert_no_child_was_killed(make_run)


def assert_no_child_was_killed(stack: RunningStack) -> None:
    """Every child stopped on SIGTERM within the grace period: none needed SIGKILL."""
    stack.drained.wait(STOP_TIMEOUT_SECONDS)
    assert not [line for line in stack.lines if "killing it" in line], stack.tail()
    assert not [line for line in stack.lines if "did not stop cleanly" in line], stack.tail()


def test_make_run_stops_everything_and_names_a_process_that_died(
    base_env: dict[str, str],
) -> None:
    env = stack_env(base_env, "run")
    # Bound but not listening: the runner's port check passes, the worker's bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", int(env["WORKER_METRICS_PORT"])))
        stack = start(env)
        code = stack.wait_exit()
    stack.save_log("make-run-died")
    delete_stack_topology(env)
    assert code == 1, stack.tail()
    assert any("worker exited with code" in line for line in stack.lines), stack.tail()


def test_children_do_not_outlive_a_runner_killed_with_sigkill(make_run: RunningStack) -> None:
    ports = [
        int(make_run.env[name])
        for name in ("WEBHOOK_PORT", "CHECKOUT_PORT", "WORKER_METRICS_PORT", "DEMO_SHOP_PORT")
    ]
    make_run.process.kill()
    make_run.process.wait()
    deadline = time.monotonic() + 30
    while any(is_reachable("127.0.0.1", port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [port for port in ports if is_reachable("127.0.0.1", port)]
