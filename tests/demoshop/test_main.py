"""``python -m demoshop`` serves its page on its port and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from tests.ports import free_port


async def test_python_m_demoshop_serves_its_page_and_exits_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "DEMO_SHOP_PORT": str(port), "DEMO_SHOP_API_KEY": "main-test-key"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "demoshop", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as response:
                        status, page = response.status, await response.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert status == 200
    assert "129.90 EUR" in page
    assert process.returncode == 0
    assert b"demoshop.starting" in output
    assert b"main-test-key" not in output


async def test_python_m_demoshop_refuses_a_bad_setting_naming_it() -> None:
    env = {**os.environ, "DEMO_SHOP_CHECKOUT_URL": "ftp://nowhere"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "demoshop", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 1
    assert b"DEMO_SHOP_CHECKOUT_URL" in errors
