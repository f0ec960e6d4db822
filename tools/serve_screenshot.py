"""Make docs/_static/serve-page.png: the page of ``dmf serve`` on an ML-100K model, in Chromium.

Usage::

    python tools/serve_screenshot.py MODEL.zarr SEEN.csv path/to/ml-100k/u.item OUT.png

``SEEN.csv`` holds the training ``user,item`` pairs (excluded from the lists).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time

import httpx
from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    store, seen, titles, out = sys.argv[1:5]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    state = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "dmf", "serve", store, "--port", str(port), "--state", state,
           "--interactions", seen, "--titles", titles]  # fmt: skip
    proc = subprocess.Popen(cmd)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(), executable_path="/usr/bin/chromium", args=ARGS,
                headless=True, viewport={"width": 820, "height": 720},
            )  # fmt: skip
            page = ctx.new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('info').textContent.length > 0")
            page.fill("#user", "5")
            page.click("#show")
            page.wait_for_selector("#recs li")
            page.locator("#recs li button.like").nth(1).click()
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Liked')"
            )
            page.screenshot(path=out, full_page=True)
            ctx.close()
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
