"""scripts/run.py's stop: a child that fails its stop makes the runner's exit status non-zero."""

from __future__ import annotations

import asyncio

import pytest

from scripts.run import Child, Running, clean_stop, spawn, stop_all

# Each child says it is up once its SIGTERM handler is in place, then waits to be stopped.
READY = "import signal, sys, time; {handler}; print('up', flush=True); time.sleep(600)"
EXITS_ZERO = READY.format(handler="signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))")
EXITS_THREE = READY.format(handler="signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))")
DEFAULT_SIGTERM = READY.format(handler="pass")
IGNORES_SIGTERM = READY.format(handler="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
GRACE_SECONDS = 1.0


async def start(name: str, code: str) -> Running:
    running = await spawn(Child(name, ("-c", code), "", 0, "UNUSED"), {}, None)
    assert running.process.stdout is not None
    return running


@pytest.mark.parametrize(
    ("code", "clean"),
    [
        pytest.param(EXITS_ZERO, True, id="exits-0"),
        pytest.param(DEFAULT_SIGTERM, True, id="ended-by-sigterm"),
        pytest.param(EXITS_THREE, False, id="exits-3"),
        pytest.param(IGNORES_SIGTERM, False, id="needs-sigkill"),
    ],
)
async def test_a_child_stopped_is_clean_only_on_exit_0_or_sigterm(
    code: str, clean: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await start("child", code)
    await wait_up(capsys)
    failed = await stop_all([running], GRACE_SECONDS, asyncio.Event())
    assert clean_stop(running.process.returncode) is clean
    assert failed == ([] if clean else ["child"])


async def wait_up(capsys: pytest.CaptureFixture[str]) -> None:
    """Wait for the child's 'up' line (its output is copied to ours, prefixed)."""
    seen = ""
    async with asyncio.timeout(30):
        while "| up" not in seen:
            await asyncio.sleep(0.05)
            seen += capsys.readouterr().out
