"""The experiment console in headless chromium: an admin logs in to /_seed/console and watches
a scripted user go online -> busy -> unavailable -> offline; each change must show in the
user's row within a second of the server making it (Server-Sent Events, no polling), the
timeline must keep a busy segment, and the explain panel must name the deciding rule.
tests/console_browser/firefox.mjs runs the same scenario in Firefox. Screenshots go to $SEED_CONSOLE_ARTIFACTS.
Started by run.sh, which starts the server (admin @exp:localhost, device timeout 3 s).
"""
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

HS = os.environ.get("SEED_CONSOLE_HS", "http://127.0.0.1:8008")
ART = Path(os.environ.get("SEED_CONSOLE_ARTIFACTS", "target/ci-artifacts/console"))
CHROMIUM = os.environ.get("SEED_BROWSER_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "console-pw-123"
DEVICE_TIMEOUT_S = 3


def api(method, path, token=None, body=None):
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


def register(name):
    status, first = api("POST", "/_matrix/client/v3/register", body={"username": name, "password": PASSWORD})
    assert status == 401, first
    body = {"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy", "session": first["session"]}}
    status, v = api("POST", "/_matrix/client/v3/register", body=body)
    assert status == 200, v
    return v


def set_presence(user, presence, msg=None):
    body = {"presence": presence}
    if msg:
        body["status_msg"] = msg
    status, v = api("PUT", f"/_matrix/client/v3/presence/{user['user_id']}/status", user["access_token"], body)
    assert status == 200, v


def test_admin_watches_a_user_change_live():
    ART.mkdir(parents=True, exist_ok=True)
    register("exp")
    alice = register("alice")
    bob = register("bob")
    api("GET", "/_matrix/client/v3/sync?set_presence=online&timeout=0", bob["access_token"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 640})
        page.goto(HS + "/_seed/console")
        page.fill("#username", "exp")
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        expect(page.locator("#live")).to_have_text("live", timeout=10_000)
        row = page.locator('tr[data-user="@alice:localhost"]')

        def step(presence, action):
            action()
            t0 = time.monotonic()
            expect(row).to_have_attribute("data-presence", presence, timeout=1_000)
            expect(row.locator(".badge")).to_have_text(presence, timeout=1_000)
            return time.monotonic() - t0

        step("online", lambda: api("GET", "/_matrix/client/v3/sync?set_presence=online&timeout=0", alice["access_token"]))
        step("busy", lambda: set_presence(alice, "busy", "on a call"))
        page.select_option("#window", "60000")
        busy_segment = row.locator('svg rect[data-presence="busy"]')
        expect(busy_segment).to_have_count(1, timeout=1_000)
        assert float(busy_segment.get_attribute("width")) >= 3, "the busy segment is visible"
        row.locator("button", has_text="explain").click()
        expect(page.locator("#explain-rule")).to_have_text("4 · manual status", timeout=1_000)
        expect(row.locator(".status")).to_have_text("on a call", timeout=1_000)
        page.screenshot(path=str(ART / "console-busy.png"), full_page=True)
        step("unavailable", lambda: set_presence(alice, "unavailable", "back soon"))
        # Offline by the timer: the device's last sign of life was the PUT just made.
        deadline = time.monotonic() + DEVICE_TIMEOUT_S
        expect(row).to_have_attribute("data-presence", "offline", timeout=(DEVICE_TIMEOUT_S + 1) * 1000)
        assert time.monotonic() <= deadline + 1.0, "offline shown more than a second after the timeout"
        expect(page.locator("#explain-rule")).to_have_text("1 · liveness", timeout=1_000)
        # The timeline still shows that she was busy, between online and unavailable.
        states = row.locator("svg rect").evaluate_all("rs => rs.map(r => r.dataset.presence)")
        assert states[-4:] == ["online", "busy", "unavailable", "offline"], states
        assert float(busy_segment.get_attribute("width")) >= 3, "the busy segment is visible"
        page.screenshot(path=str(ART / "console.png"), full_page=True)
        browser.close()
