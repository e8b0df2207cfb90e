"""Make the README's screenshots: `python docs/screenshots.py` (needs chromium and playwright).

Starts `labelwise demo` in a temporary folder, answers 80 items over the API with the SMS
collection's own labels (so the model has learned something, and overlap items get a second
annotator), then photographs the annotate page (why-panel open, one answer given so the model's
split shows), the dashboard, and the annotate page again with the model's guess shown before
answering (the words behind it marked in the text), then the admin's pages: the settings
(after writing guidelines and label definitions), the guidelines as an annotator first sees
them, and the data browser with a search and an item open. Writes docs/annotate.png,
docs/dashboard.png, docs/annotate-explained.png, docs/settings.png, docs/guidelines.png and
docs/items.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset

DOCS = Path(__file__).resolve().parent
GUIDELINES = """# Spam or ham?

**Spam** is sent in bulk to sell or to trick: prizes, offers, premium-rate services, "you have
won". **Ham** is anything a person wrote to you, however short or odd.

- A message from a company you deal with (a delivery, your bank) is **ham**.
- When in doubt, skip (press S): a wrong label costs more than a missing one.

| message | label |
|---|---|
| "Ok lar... Joking wif u oni..." | ham |
| "WINNER!! Claim your prize, call 0906..." | spam |
"""
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def annotating(base: str, token: str) -> Iterator[Any]:
    """A headless Chromium page signed in with ``token`` at ``base``, on the annotate page with
    an item shown and the why-panel open; the browser is closed after the block."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 860})
            page.goto(f"{base}/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_selector('#annotate[data-state="item"]')
            if page.locator("#why-panel").is_hidden():
                page.keyboard.press("w")
            yield page
        finally:
            browser.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict | None:
    request = urllib.request.Request(
        f"{base}/api/projects/1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read()) if r.status in (200, 201) else None


def main() -> None:
    truth = load_dataset(bundled_path("sms-spam"))
    label_of = dict(zip(truth.ids.tolist(), truth.labels.tolist(), strict=True))
    work = Path(tempfile.mkdtemp())
    port = _port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labelwise.cli",
            "demo",
            "--port",
            str(port),
            "--dir",
            str(work / "demo"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        admin = (work / "demo" / "demo-admin-token.txt").read_text().strip()
        maria = _call(base, admin, "POST", "/annotators", {"name": "maria"})["token"]  # type: ignore[index]
        for token, count in ((admin, 25), (admin, 25), (maria, 25), (admin, 25), (maria, 25)):
            for _ in range(count):
                got = _call(base, token, "POST", "/next", {"exclude": []})
                if got is None:
                    break
                item = got["item"]
                _call(
                    base,
                    token,
                    "POST",
                    f"/items/{item['id']}/label",
                    {"value": label_of[item["external_id"]], "duration_ms": 2300},
                )
            time.sleep(5)  # let the worker fit on what arrived

        with annotating(base, admin) as page:
            # Answer the item on screen correctly (the SMS collection knows), so the panel's
            # "your last answer, and the model" part shows; then show the next item.
            by_text = dict(zip(truth.items.tolist(), truth.labels.tolist(), strict=True))
            text = page.inner_text("#item-body").strip()
            page.keyboard.press("2" if by_text.get(text) == "spam" else "1")
            time.sleep(1.0)
            page.screenshot(path=str(DOCS / "annotate.png"))
            page.goto(f"{base}/p/1/dashboard")
            page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
            # With the guess shown before answering, the words behind it are marked too.
            _call(base, admin, "PATCH", "/settings", {"changes": {"show_guess": "before"}})
            page.goto(f"{base}/p/1/annotate")
            page.wait_for_selector('#annotate[data-state="item"]')
            time.sleep(0.5)
            page.screenshot(path=str(DOCS / "annotate-explained.png"))
            # The admin's pages: guidelines and definitions written, shown, and the browser.
            _call(base, admin, "PATCH", "/settings", {"changes": {
                "show_guess": "after",
                "guidelines": GUIDELINES,
                "label_help": {"ham": "a message from a person, to you",
                               "spam": "sent in bulk: prizes, offers, services"},
            }})  # fmt: skip
            page.goto(f"{base}/p/1/settings")
            page.wait_for_selector("#settings-form")
            page.screenshot(path=str(DOCS / "settings.png"), full_page=True)
            page.goto(f"{base}/p/1/annotate")
            page.wait_for_selector("#guidelines:not([hidden])")
            time.sleep(0.3)
            page.screenshot(path=str(DOCS / "guidelines.png"))
            page.keyboard.press("Escape")
            page.goto(f"{base}/p/1/items?text=free&label=spam")
            page.wait_for_selector("#browse-rows tr[data-id]")
            page.click("#browse-rows tr[data-id]")
            page.wait_for_selector("#detail-history li")
            time.sleep(0.5)
            page.screenshot(path=str(DOCS / "items.png"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote the screenshots to {DOCS}")


if __name__ == "__main__":
    main()
