"""Hydrogen (hydrogen-view-sdk, default settings: end-to-end encryption on) against Seed in a
headless Debian chromium driven by Playwright.

Two users log in through Hydrogen's login screen, alice opens an encrypted DM with bob, bob
accepts the invite in Hydrogen, they exchange messages that the other side decrypts and shows,
and each sees the other's presence (the page's presence panel) change. Screenshots go to
$SEED_BROWSER_ARTIFACTS. Started by tests/browser/run.sh, which starts the server and the
static file server and sets SEED_BROWSER_HS / SEED_BROWSER_APP.
"""
import json
import os
import struct
import zlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

HS = os.environ.get("SEED_BROWSER_HS", "http://127.0.0.1:8008")
APP = os.environ.get("SEED_BROWSER_APP", "http://127.0.0.1:8080/")
ART = Path(os.environ.get("SEED_BROWSER_ARTIFACTS", "target/ci-artifacts/browser"))
CHROMIUM = os.environ.get("SEED_BROWSER_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "browser-pw-123"
# Encryption (key upload, key claim, to-device room keys) and the first sync take a while in a
# cold headless browser; every wait is bounded by this.
STEP_MS = 60_000


def api(method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(HS + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def png(width: int, height: int) -> bytes:
    """A small RGB PNG (a gradient), written by hand so no imaging package is needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def register(name: str) -> str:
    status, first = api("POST", "/_matrix/client/v3/register", body={"username": name, "password": PASSWORD})
    assert status == 401, first
    body = {"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy", "session": first["session"]}}
    status, v = api("POST", "/_matrix/client/v3/register", body=body)
    assert status == 200, v
    return v["user_id"]


def shot(page: Page, name: str) -> None:
    ART.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ART / f"{name}.png"), full_page=True)


def session_token(page: Page) -> str:
    return page.evaluate("async () => (await window.hydrogenPlatform.sessionInfoStorage.getAll())[0].accessToken")


def log_in(page: Page, user: str, watch: str) -> None:
    page.goto(f"{APP}?watch={watch}")
    page.locator("#username").wait_for(timeout=STEP_MS)
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log In").click()
    # The session view (room list) appears once login, key upload and the first sync are done.
    try:
        page.locator(".RoomList").wait_for(timeout=STEP_MS)
    except Exception:
        shot(page, f"failed-login-{user}")
        raise


def presence_of(page: Page, user_id: str):
    return page.locator(f'#seed-presence .seed-presence-user[data-user-id="{user_id}"]')


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def record_console(page: Page, name: str) -> None:
    ART.mkdir(parents=True, exist_ok=True)
    out = open(ART / f"{name}-console.log", "a", buffering=1)
    page.on("console", lambda m: out.write(f"[{m.type}] {m.text}\n"))
    page.on("pageerror", lambda e: out.write(f"[pageerror] {e}\n"))


def test_encrypted_dm_and_presence(browser):
    alice_id = register("alice")
    bob_id = register("bob")

    ctx_a = browser.new_context(viewport={"width": 1100, "height": 750})
    ctx_b = browser.new_context(viewport={"width": 1100, "height": 750})
    alice, bob = ctx_a.new_page(), ctx_b.new_page()
    record_console(alice, "alice")
    record_console(bob, "bob")

    log_in(alice, "alice", bob_id)
    shot(alice, "01-alice-logged-in")
    log_in(bob, "bob", alice_id)
    shot(bob, "02-bob-logged-in")

    # Both devices uploaded their keys through Hydrogen (encryption on by default).
    alice_token, bob_token = session_token(alice), session_token(bob)
    status, keys = api("POST", "/_matrix/client/v3/keys/query", bob_token, {"device_keys": {alice_id: []}})
    assert status == 200 and keys["device_keys"].get(alice_id), keys

    # alice opens an encrypted DM with bob (what Hydrogen's "start chat" sends).
    status, room = api(
        "POST",
        "/_matrix/client/v3/createRoom",
        alice_token,
        {
            "preset": "trusted_private_chat",
            "is_direct": True,
            "invite": [bob_id],
            "initial_state": [
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            ],
        },
    )
    assert status == 200, room

    # bob accepts the invite in Hydrogen.
    bob.locator(".RoomList li a").first.click(timeout=STEP_MS)
    bob.get_by_role("button", name="Accept").click(timeout=STEP_MS)
    bob.locator(".MessageComposer_input textarea").wait_for(timeout=STEP_MS)
    shot(bob, "03-bob-joined")

    # alice opens the room and sends; bob's Hydrogen decrypts and shows it.
    alice.locator(".RoomList li a").first.click(timeout=STEP_MS)
    composer = alice.locator(".MessageComposer_input textarea")
    expect(composer).to_have_attribute("placeholder", "Send an encrypted message\u2026", timeout=STEP_MS)
    expect(alice.locator(".RoomView .Timeline")).to_contain_text("bob", timeout=STEP_MS)
    composer.fill("hello bob, this is encrypted")
    composer.press("Enter")
    expect(bob.locator(".Timeline_messageBody", has_text="hello bob, this is encrypted")).to_be_visible(timeout=STEP_MS)
    shot(bob, "04-bob-decrypted")

    bob_composer = bob.locator(".MessageComposer_input textarea")
    bob_composer.fill("hi alice, decrypted fine")
    bob_composer.press("Enter")
    expect(alice.locator(".Timeline_messageBody", has_text="hi alice, decrypted fine")).to_be_visible(timeout=STEP_MS)
    shot(alice, "05-alice-decrypted")

    # alice sends a picture: Hydrogen encrypts it, uploads it to the media repository, and bob's
    # Hydrogen downloads (authenticated media, through its service worker) and decrypts it.
    picture = ART / "picture.png"
    picture.write_bytes(png(64, 48))
    alice.locator(".MessageComposer_input button.sendFile").click()
    with alice.expect_file_chooser(timeout=STEP_MS) as chooser:
        alice.get_by_text("Send picture").click()
    chooser.value.set_files(str(picture))
    image = bob.locator(".Timeline img").last
    expect(image).to_be_visible(timeout=STEP_MS)
    bob.wait_for_function(
        "() => [...document.querySelectorAll('.Timeline img')].some(i => i.complete && i.naturalWidth === 64)",
        timeout=STEP_MS,
    )
    shot(bob, "05b-bob-sees-picture")

    # The server only ever saw ciphertext.
    status, msgs = api("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room['room_id'])}/messages?dir=b&limit=50", bob_token)
    assert status == 200, msgs
    types = [e["type"] for e in msgs["chunk"]]
    assert "m.room.encrypted" in types and "m.room.message" not in types, types

    # Presence: both are online while their Hydrogen syncs.
    expect(presence_of(bob, alice_id)).to_have_attribute("data-presence", "online", timeout=STEP_MS)
    expect(presence_of(alice, bob_id)).to_have_attribute("data-presence", "online", timeout=STEP_MS)
    shot(bob, "06-bob-sees-alice-online")
    # alice sets herself busy; bob sees it.
    status, v = api("PUT", f"/_matrix/client/v3/presence/{alice_id}/status", alice_token, {"presence": "busy", "status_msg": "in a meeting"})
    assert status == 200, v
    # The panel shows the legacy wire value: busy is spelled as MSC3026 does (legacy_busy_as).
    expect(presence_of(bob, alice_id)).to_have_attribute("data-presence", "org.matrix.msc3026.busy", timeout=STEP_MS)
    expect(presence_of(bob, alice_id)).to_contain_text("in a meeting")
    shot(bob, "07-bob-sees-alice-busy")
    # bob closes Hydrogen: his only device stops syncing, alice sees him go offline.
    ctx_b.close()
    expect(presence_of(alice, bob_id)).to_have_attribute("data-presence", "offline", timeout=STEP_MS)
    shot(alice, "08-alice-sees-bob-offline")
    ctx_a.close()
