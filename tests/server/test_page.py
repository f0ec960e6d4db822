"""The page at ``GET /`` in headless Chromium: show a top 10, like items, see the list change."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.server.conftest import Server

CHROMIUM = "/usr/bin/chromium"
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


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    sync = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 900, "height": 820},
        )  # fmt: skip
        try:
            yield ctx.new_page()
        finally:
            ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def titled_server(small, tmp_path_factory):
    model, _, store, csv = small
    root = tmp_path_factory.mktemp("serve-page")
    titles = root / "titles.csv"
    rows = [f"{int(i)},Film number {int(i)}" for i in model.items_]
    titles.write_text("item,title\n" + "\n".join(rows))
    srv = Server(
        store, "--state", str(root / "state"), "--interactions", csv, "--titles", str(titles)
    )
    yield srv
    srv.stop()


def _listed(page):
    return [int(li.get_attribute("data-item")) for li in page.locator("#recs li").all()]


def test_page_like_updates_the_list(browser_page, titled_server, tmp_path):
    page, srv = browser_page, titled_server
    page.goto(srv.url + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('users')")
    page.fill("#user", "5")
    page.click("#show")
    page.wait_for_selector("#recs li")
    before = _listed(page)
    want = [x["item"] for x in srv.client.get("/recommend", params={"user": 5}).json()["items"]]
    assert before == want and len(before) == 10
    assert page.locator("#recs li .name").first.inner_text() == f"Film number {before[0]}"

    page.locator("#recs li button.like").first.click()
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Liked')")
    after = _listed(page)
    assert before[0] not in after and len(after) == 10
    want = [x["item"] for x in srv.client.get("/recommend", params={"user": 5}).json()["items"]]
    assert after == want  # the page shows what the server now answers

    page.click("#new-user")
    page.wait_for_function("document.getElementById('heading').textContent.startsWith('New user')")
    new_id = int(page.input_value("#user"))
    popular = _listed(page)
    page.locator("#recs li button.like").nth(1).click()
    page.wait_for_function("document.getElementById('heading').textContent.startsWith('Top 10')")
    listed = _listed(page)
    assert popular[1] not in listed
    got = srv.client.get("/recommend", params={"user": new_id}).json()["items"]
    assert listed == [x["item"] for x in got]
    page.screenshot(path=str(tmp_path / "serve-page.png"))
    shot = os.environ.get("DMF_SERVE_SCREENSHOT")
    if shot:  # docs/_static/serve-page.png is made this way
        page.screenshot(path=shot)


def test_page_reports_errors(browser_page, titled_server):
    page = browser_page
    page.goto(titled_server.url + "/")
    page.fill("#user", "424242")
    page.click("#show")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "unknown" in page.inner_text("#status")
