"""Hostile requests for the webhook ingress: bodies, headers, signatures, sizes and encodings.

Each case is either a request aiohttp's client can send, or raw bytes for what it cannot
(broken request lines, bad header bytes, lying Content-Length). Generation is seeded, so a
failure can be replayed from the seed and the case index.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.e2e.drivers import WEBHOOK_PATH, notification, sign


@dataclass(frozen=True)
class Case:
    kind: str
    method: str = "POST"
    path: str = WEBHOOK_PATH
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    raw: bytes | None = None  # sent as-is over a socket when set


@dataclass
class FuzzResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[tuple[str, int]] = field(default_factory=list)
    no_answer: Counter[str] = field(default_factory=Counter)  # by kind: closed, reset, timed out
    kinds: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class Fuzzer:
    """Seeded generator of hostile cases against one webhook key."""

    def __init__(self, key: bytes, *, seed: int, max_body: int) -> None:
        self.key = key
        self.rng = random.Random(seed)
        self.max_body = max_body
        self.signatures: set[str] = set()  # every valid signature sent, for the log scan
        self._makers: list[tuple[int, Callable[[], Case]]] = [
            (20, self.random_bytes_unsigned),
            (15, self.garbage_signature),
            (15, self.signed_json_variant),
            (8, self.signed_random_bytes),
            (8, self.signature_near_miss),
            (6, self.header_variants),
            (6, self.encodings),
            (4, self.wrong_method_or_path),
            (4, self.raw_malformed),
            (1, self.sizes),
            (3, self.valid_event),
        ]
        self._weights = [w for w, _ in self._makers]

    def cases(self, count: int) -> Iterator[Case]:
        for _ in range(count):
            ((_, maker),) = self.rng.choices(self._makers, weights=self._weights)
            yield maker()

    # ------------------------------------------------------------ helpers

    def _bytes(self, low: int = 0, high: int = 2048) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def _signed(self, body: bytes) -> str:
        signature = sign(self.key, body)
        self.signatures.add(signature)
        return signature

    def _junk_text(self) -> str:
        alphabet = "abcXYZ019+/=_-.,:;!@#$%^&*(){}[]<>?'\"\\ \té"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 120)))

    def _json_value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth > 3 or roll < 0.4:
            return self.rng.choice(
                [None, True, False, 0, -1, 2**70, 1.5e308, "", "x" * 300, "\u0000", "💳", "NaN"]
            )
        if roll < 0.7:
            return [self._json_value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self._junk_text()[:20]: self._json_value(depth + 1) for _ in range(3)}

    # ------------------------------------------------------------ case makers

    def random_bytes_unsigned(self) -> Case:
        headers = () if self.rng.random() < 0.5 else (("Content-Type", "application/json"),)
        return Case("random_unsigned", headers=headers, body=self._bytes())

    def garbage_signature(self) -> Case:
        sig = self.rng.choice(
            [
                "",
                " ",
                "v1,!!!",
                "!!!!",
                "=",
                "====",
                base64.b64encode(
                    self.rng.randbytes(self.rng.choice([0, 1, 16, 31, 33, 64]))
                ).decode(),
                base64.b64encode(self.rng.randbytes(32)).decode(),
                self.rng.randbytes(32).hex(),
                "sha256=" + self.rng.randbytes(32).hex(),
                self._junk_text(),
                "A" * self.rng.choice([43, 44, 45, 4096]),
            ]
        )
        body = json.dumps(notification("exec-" + self._junk_text()[:8], "ref")).encode()
        return Case("garbage_signature", headers=(("X-Signature", sig),), body=body)

    def signed_json_variant(self) -> Case:
        shapes: list[Any] = [
            self._json_value(),
            {"event": self._json_value()},
            {"no_event": True},
            {"event": ""},
            {"event": "e" * 300},
            {"event": "executionActionCompleted", "id": "i" * 400},
            {"event": "executionActionCompleted", "id": self._json_value()},
            {"event": "a.b.#.*", "details": self._json_value()},
            {"event": "executionActionCompleted", "details": self._json_value()},
            {"event": "executionActionCompleted", "details": {"execution": self._json_value()}},
            {"event": "\u0000\ud7ff💳", "time": self._json_value()},
        ]
        payload = self.rng.choice(shapes)
        body = json.dumps(payload, ensure_ascii=self.rng.random() < 0.5).encode()
        return Case(
            "signed_json_variant", headers=(("X-Signature", self._signed(body)),), body=body
        )

    def signed_random_bytes(self) -> Case:
        body = self.rng.choice(
            [
                self._bytes(),
                b"[" * 50_000 + b"]" * 50_000,
                b'{"event":' * 20_000,
                b'{"event":"x","a":' + b"[" * 100_000,
                b"\xff\xfe" + self._bytes(1, 100),
                b'{"event": "x", "n": 1e999999}',
                b'{"event": "x"} trailing',
                b'{"event":"executionActionCompleted","d":"\\ud800"}',
            ]
        )
        return Case(
            "signed_random_bytes", headers=(("X-Signature", self._signed(body)),), body=body
        )

    def signature_near_miss(self) -> Case:
        body = json.dumps(notification("exec-near-miss", "ref-near-miss")).encode()
        good = sign(self.key, body)
        variants = [
            good[:10] + ("A" if good[10] != "A" else "B") + good[11:],
            " " + good + " ",
            good.lower(),
            good.rstrip("="),
            good.replace("+", "-").replace("/", "_"),
            sign(self.key + b"x", body),
            sign(self.key, body + b" "),
            "sha256=" + good,
            good + "," + good,
        ]
        chosen = self.rng.choice(variants)
        self.signatures.add(chosen.strip())
        return Case("signature_near_miss", headers=(("X-Signature", chosen),), body=body)

    def header_variants(self) -> Case:
        body = json.dumps(notification("exec-headers", "ref-headers")).encode()
        good = self._signed(body)
        headers = self.rng.choice(
            [
                (("x-signature", good),),
                (("X-SIGNATURE", good), ("X-Signature", "garbage")),
                (("X-Signature", good), ("Content-Type", "text/plain; charset=utf-16")),
                (("X-Signature", good), ("Content-Type", "multipart/form-data; boundary=x")),
                (("X-Signature", good), ("Content-Type", "application/x-www-form-urlencoded")),
                (("X-Signature", good), ("X-Forwarded-For", "1.2.3.4, " * 200)),
                (("X-Signature", good), ("Expect", "100-continue")),
                (("X-Signature", good), ("Connection", "close")),
                (("X-Signature", "x" * 7000),),
                (("Authorization", "Bearer e2e-not-a-real-token"), ("X-Signature", good)),
            ]
        )
        return Case("header_variants", headers=headers, body=body)

    def encodings(self) -> Case:
        payload = json.dumps(notification("exec-enc", "ref-enc")).encode()
        variants: list[tuple[bytes, tuple[tuple[str, str], ...]]] = [
            (gzip.compress(payload), (("Content-Encoding", "gzip"),)),
            (payload, (("Content-Encoding", "gzip"),)),  # claims gzip, is not
            (zlib.compress(payload), (("Content-Encoding", "deflate"),)),
            (self._bytes(1, 200), (("Content-Encoding", "br"),)),
            (payload.decode().encode("utf-16"), ()),
            (b"\xef\xbb\xbf" + payload, ()),
            (
                payload.decode().encode("latin-1", "replace"),
                (("Content-Type", "application/json; charset=latin-1"),),
            ),
        ]
        body, headers = self.rng.choice(variants)
        signed = self.rng.random() < 0.5
        extra = (("X-Signature", self._signed(body)),) if signed else ()
        return Case("encodings", headers=headers + extra, body=body)

    def wrong_method_or_path(self) -> Case:
        method, path = self.rng.choice(
            [
                ("GET", WEBHOOK_PATH),
                ("PUT", WEBHOOK_PATH),
                ("DELETE", WEBHOOK_PATH),
                ("PATCH", WEBHOOK_PATH),
                ("OPTIONS", WEBHOOK_PATH),
                ("POST", "/webhooks/other"),
                ("POST", "/webhooks/payrails/../../etc/passwd"),
                ("POST", "/" + "a" * 3000),
                ("POST", WEBHOOK_PATH + "?x=" + "y" * 2000),
                ("POST", "/webhooks/%00"),
            ]
        )
        return Case("wrong_method_or_path", method=method, path=path, body=self._bytes(0, 64))

    def raw_malformed(self) -> Case:
        body = json.dumps(notification("exec-raw", "ref-raw")).encode()
        sig = self._signed(body).encode()
        raw = self.rng.choice(
            [
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                b"X-Signature: " + sig + b"\r\n\r\n" + body,  # lies: shorter than declared
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 3\r\n\r\nzz\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"\r\nfffffffffffffffffff\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nX-Signature: \xff\xfe\x00\r\n"
                b"Content-Length: 2\r\n\r\n{}",
                b"POST /webhooks/payrails HTTP/9.9\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + self.rng.randbytes(64),
                b"GARBAGE\r\n\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\n" + b"X-A: b\r\n" * 500 + b"\r\n",
                b"POST /webhooks/payrails HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"Content-Length: 3\r\n\r\n{}",
            ]
        )
        return Case("raw_malformed", raw=raw)

    def sizes(self) -> Case:
        size = self.rng.choice([self.max_body, self.max_body + 1, 2 * self.max_body])
        body = b'{"event":"x","pad":"' + b"a" * max(0, size - 21) + b'"}'
        if self.rng.random() < 0.5:
            return Case("sizes", headers=(("X-Signature", self._signed(body)),), body=body)
        return Case("sizes", headers=(("X-Signature", "AAAA"),), body=body)

    def valid_event(self) -> Case:
        """A correctly signed, well-formed event about an execution that does not exist."""
        payload = notification(f"exec-fuzz-{self.rng.getrandbits(48):x}", "ref-fuzz")
        body = json.dumps(payload).encode()
        return Case("valid_event", headers=(("X-Signature", self._signed(body)),), body=body)


async def _send_raw(host: str, port: int, raw: bytes) -> int:
    """Write raw bytes, read the status line; 0 when the server just closes."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return -1
    try:
        writer.write(raw)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 3)
    except (OSError, TimeoutError):
        return 0
    finally:
        writer.transport.abort()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


async def _send(session: aiohttp.ClientSession, base_url: str, case: Case) -> int:
    try:
        async with session.request(
            case.method,
            base_url + case.path,
            data=case.body,
            headers=list(case.headers),
            skip_auto_headers=("Content-Type",),
            timeout=aiohttp.ClientTimeout(total=15),
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0


async def run_fuzz(
    fuzzer: Fuzzer, host: str, port: int, count: int, *, concurrency: int = 32
) -> FuzzResult:
    """Send ``count`` cases from ``concurrency`` senders; record every status and every 5xx."""
    result = FuzzResult()
    base_url = f"http://{host}:{port}"
    cases = fuzzer.cases(count)
    started = time.monotonic()

    async def sender(session: aiohttp.ClientSession) -> None:
        for case in cases:
            if case.raw is not None:
                status = await _send_raw(host, port, case.raw)
            else:
                status = await _send(session, base_url, case)
            result.sent += 1
            result.kinds[case.kind] += 1
            result.statuses[status] += 1
            if status >= 500:
                result.server_errors.append((case.kind, status))
            elif status <= 0:
                result.no_answer[case.kind] += 1

    # A connection per case: a case that desynchronises a kept-alive connection (a lying
    # Content-Length, say) must not make the next case on it look unanswered.
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    return result
