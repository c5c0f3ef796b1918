"""Shared helpers for the matrix-nio interop tests.

The server under test is given by ``SEED_BASE_URL`` (``tests/interop/run.sh`` starts one).
Every HTTP exchange a client makes is recorded, so a failing assertion can show the exact
request and response that nio saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any, Awaitable, Callable, TypeVar

import nio
import pytest

T = TypeVar("T")

PASSWORD = "interop-pw-123456"
# Whole-test budget and per-call budget, in seconds.
TEST_TIMEOUT = float(os.environ.get("SEED_INTEROP_TEST_TIMEOUT", "60"))
CALL_TIMEOUT = 20.0


def base_url() -> str:
    url = os.environ.get("SEED_BASE_URL")
    if not url:
        pytest.skip("SEED_BASE_URL is not set (run tests/interop/run.sh)")
    return url.rstrip("/")


def _short(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _redact(text: str | None) -> str:
    if not text:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):
        for key in ("password", "access_token"):
            if key in value:
                value[key] = "<redacted>"
    return json.dumps(value, separators=(",", ":"))


class RecordingClient(nio.AsyncClient):
    """A real ``nio.AsyncClient`` that remembers its raw HTTP exchanges."""

    def __init__(self, *args: Any, label: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label
        self.exchanges: list[str] = []

    async def send(self, method: str, path: str, data: Any = None, *args: Any, **kwargs: Any):
        # Hide the access token that nio puts in the query string of some requests.
        shown_path = path.split("access_token=")[0] + ("access_token=…" if "access_token=" in path else "")
        started = time.monotonic()
        try:
            resp = await super().send(method, path, data, *args, **kwargs)
        except BaseException as exc:  # timeouts, connection errors
            self.exchanges.append(f"{method} {shown_path} {_short(_redact(data))} -> {type(exc).__name__}: {exc}")
            raise
        body = await resp.read()  # aiohttp caches the body, nio reads it again
        took = (time.monotonic() - started) * 1000
        self.exchanges.append(
            f"{method} {shown_path} {_short(_redact(data))}\n"
            f"    -> {resp.status} ({took:.0f} ms) {_short(_redact(body.decode('utf-8', 'replace')))}"
        )
        return resp

    def history(self, last: int = 12) -> str:
        lines = self.exchanges[-last:]
        return f"--- last {len(lines)} HTTP exchanges of {self.label} ({self.user_id or self.user}) ---\n" + "\n".join(lines)


def new_client(label: str, user: str = "") -> RecordingClient:
    config = nio.AsyncClientConfig(
        max_limit_exceeded=2,
        max_timeouts=2,
        request_timeout=CALL_TIMEOUT,
        store_sync_tokens=False,
        encryption_enabled=False,
    )
    return RecordingClient(base_url(), user, config=config, label=label)


def describe(resp: Any) -> str:
    parts = [type(resp).__name__]
    for attr in ("status_code", "message", "retry_after_ms"):
        value = getattr(resp, attr, None)
        if value is not None:
            parts.append(f"{attr}={value!r}")
    return " ".join(parts)


def expect(resp: Any, cls: type[T], what: str, *clients: RecordingClient) -> T:
    """Assert that nio parsed ``resp`` as ``cls``; otherwise fail with the raw exchanges."""
    if isinstance(resp, cls):
        return resp
    history = "\n".join(c.history() for c in clients)
    pytest.fail(f"{what}: expected {cls.__name__}, got {describe(resp)}\n{history}", pytrace=False)


async def within(coro: Awaitable[T], what: str, *clients: RecordingClient, seconds: float = CALL_TIMEOUT + 20) -> T:
    try:
        return await asyncio.wait_for(coro, seconds)
    except asyncio.TimeoutError:
        history = "\n".join(c.history() for c in clients)
        pytest.fail(f"{what}: no answer within {seconds:.0f}s\n{history}", pytrace=False)


def random_localpart(tag: str) -> str:
    return f"interop_{tag}_{secrets.token_hex(5)}"


async def register_and_login(tag: str, notes: list[str]) -> RecordingClient:
    """Register a fresh user through nio, then log in again as a new device with ``login()``."""
    localpart = random_localpart(tag)
    reg = new_client(f"{tag}-register", localpart)
    try:
        resp = await within(reg.register(localpart, PASSWORD, device_name="nio register"), "register", reg)
        if not isinstance(resp, nio.RegisterResponse):
            # nio's register() sends m.login.dummy without a UIA session. If the server insists
            # on a session, do the dance nio supports: ask for one, then send dummy with it.
            notes.append(f"plain register() failed ({describe(resp)}); retrying with a UIA session")
            first = await within(
                reg.register_interactive(localpart, PASSWORD, auth_dict={}, device_name="nio register"),
                "register (UIA session request)",
                reg,
            )
            session = getattr(first, "session", None)
            if not session:
                pytest.fail(f"register: no UIA session offered: {describe(first)}\n{reg.history()}", pytrace=False)
            resp = await within(
                reg.register(localpart, PASSWORD, device_name="nio register", session_token=session),
                "register (dummy with session)",
                reg,
            )
        resp = expect(resp, nio.RegisterResponse, "register", reg)
        assert resp.user_id.startswith(f"@{localpart}:"), f"unexpected user id {resp.user_id}"
        assert resp.access_token and resp.device_id, f"register returned no token/device: {resp}"
    finally:
        await reg.close()

    client = new_client(tag, localpart)
    login = await within(client.login(PASSWORD, device_name=f"nio {tag}"), "login", client)
    login = expect(login, nio.LoginResponse, "login", client)
    assert login.user_id == resp.user_id, f"login user {login.user_id} != registered {resp.user_id}"
    assert client.logged_in and client.access_token
    assert login.device_id != resp.device_id, "a fresh login() should create a new device"
    return client


async def sync_until(
    client: RecordingClient,
    predicate: Callable[[nio.SyncResponse], bool],
    what: str,
    deadline_s: float = 20.0,
    poll_ms: int = 2000,
    others: tuple[RecordingClient, ...] = (),
) -> nio.SyncResponse:
    """Long-poll ``sync`` until ``predicate`` holds for a response, within ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    errors: list[str] = []
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        resp = await within(client.sync(timeout=poll_ms), f"sync ({what})", client, *others)
        if not isinstance(resp, nio.SyncResponse):
            errors.append(describe(resp))
            if len(errors) >= 3:
                break
            await asyncio.sleep(0.2)
            continue
        if predicate(resp):
            return resp
    history = "\n".join(c.history(8) for c in (client, *others))
    pytest.fail(
        f"{what}: not seen after {rounds} sync rounds in {deadline_s:.0f}s; sync errors: {errors or 'none'}\n{history}",
        pytrace=False,
    )


def bad_events(resp: nio.SyncResponse) -> list[str]:
    """Events nio could not parse (schema mismatch): each is a server interop bug."""
    found = []
    for room_id, info in resp.rooms.join.items():
        for ev in list(info.timeline.events) + list(info.state):
            if isinstance(ev, (nio.BadEvent, nio.UnknownBadEvent)):
                found.append(f"{room_id}: {type(ev).__name__} {json.dumps(ev.source)[:500]}")
    return found


def run(coro_factory: Callable[[], Awaitable[None]]) -> None:
    """Run one async test with an overall time budget."""

    async def main() -> None:
        try:
            await asyncio.wait_for(coro_factory(), TEST_TIMEOUT)
        except asyncio.TimeoutError:
            pytest.fail(f"test did not finish within {TEST_TIMEOUT:.0f}s", pytrace=False)

    asyncio.run(main())
