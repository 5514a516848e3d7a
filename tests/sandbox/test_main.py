"""``python -m sandbox`` serves on its port and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from tests.ports import free_port


async def test_python_m_sandbox_serves_tokens_and_exits_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {
        **os.environ,
        "SANDBOX_HOST": "127.0.0.1",
        "SANDBOX_PORT": str(port),
        "PAYRAILS_CLIENT_ID": "main-test",
        "PAYRAILS_CLIENT_SECRET": "main-secret",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.post(
                        f"http://127.0.0.1:{port}/auth/token/main-test",
                        headers={"x-api-key": "main-secret"},
                    ) as response:
                        token = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert token["token_type"] == "Bearer"
    assert process.returncode == 0
    assert b"sandbox.starting" in output
    assert token["access_token"].encode() not in output
