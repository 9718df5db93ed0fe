"""A real headless Chromium (Debian's `chromium`, driven by Playwright) for the UI tests."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import service_missing

SCREENSHOTS = Path(os.environ.get("STELLA_SCREENSHOTS", "/tmp/stella-screenshots"))
LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')


def login_fields(client) -> dict[str, str]:
    """What the sign-in form adds to a token for an HTTP client (TestClient/httpx): GET /login
    leaves its pre-session cookie in the client's jar and gives the matching hidden field."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    found = LOGIN_CSRF.search(page.text)
    assert found, "no login_csrf field on the sign-in page"
    return {"login_csrf": found.group(1)}


def chromium_path() -> str:
    found = os.environ.get("STELLA_CHROMIUM") or shutil.which("chromium")
    if not found:
        service_missing("Debian's chromium (apt-get install chromium)")
    assert found is not None
    return found


@contextmanager
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # loopback only; no sandbox inside the CI container (it runs as root)
            args=[
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, base_url: str, token: str) -> None:
    """Sign in through the login form, as a person would."""
    page.goto(f"{base_url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(rf"^{re.escape(base_url)}/(\?.*)?$"))


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
