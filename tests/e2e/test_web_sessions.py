"""Web UI sessions over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: a session lasts
`SESSION_LIFETIME` on the server's clock and is refused afterwards (the API token it was opened
with keeps working), and revoking that API token ends the session at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from stella.adapters.db import tables as t
from stella.api.app import create_app
from stella.bootstrap import utc_now
from stella.services.auth import hash_token
from stella.services.web_sessions import SESSION_LIFETIME
from stella.web.core import COOKIE

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def browsers(container, clock) -> Iterator:
    """Browser-like clients (each its own cookie jar) of an app whose clock is `clock`."""
    app = create_app(replace(container, clock=clock))
    opened: list[TestClient] = []

    def open_browser() -> TestClient:
        browser = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        browser.close()


def sign_in(browser: TestClient, token: str) -> str:
    response = browser.post("/login", data={"token": token, "next": "/releases"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/releases"
    cookie = browser.cookies.get(COOKIE)
    assert cookie
    return str(cookie)


def refused(response, path: str) -> None:
    """The UI sends the browser back to the sign-in page, saying the session ended."""
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/login?next=%2F{path.lstrip('/')}&expired=1"


def session_rows(database, cookie: str) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(t.web_sessions)
                .where(t.web_sessions.c.id_hash == hash_token(cookie))
            ).scalar_one()
        )


def test_a_session_expires_after_its_lifetime(api, browsers, clock, database):
    browser = browsers()
    signed_in_at = clock.now
    response = browser.post("/login", data={"token": api.issued.token, "next": "/"})
    assert response.status_code == 303
    set_cookie = response.headers["set-cookie"]
    assert f"Max-Age={int(SESSION_LIFETIME.total_seconds())}" in set_cookie
    assert "HttpOnly" in set_cookie
    assert "SameSite=strict" in set_cookie
    cookie = str(browser.cookies.get(COOKIE))
    assert session_rows(database, cookie) == 1

    clock.now = signed_in_at + SESSION_LIFETIME - timedelta(seconds=1)
    page = browser.get("/releases")
    assert page.status_code == 200, page.text
    csrf = CSRF.search(page.text)
    assert csrf, "no CSRF token on the page"

    clock.now = signed_in_at + SESSION_LIFETIME
    refused(browser.get("/releases"), "/releases")
    refused(browser.get("/audit"), "/audit")
    # a form of the expired session is refused as well, CSRF token or not
    refused(browser.post("/logout", data={"csrf": csrf.group(1)}), "/logout")
    notice = browser.get("/login", params={"next": "/releases", "expired": "1"})
    assert "Your session has expired; sign in again." in notice.text
    # the session ended, not the API token
    assert api.get("/environments").status_code == 200

    # signing in again opens a new session, and purges the expired one
    clock.now = signed_in_at + SESSION_LIFETIME + timedelta(seconds=1)
    fresh = sign_in(browser, api.issued.token)
    assert fresh != cookie
    assert browser.get("/releases").status_code == 200
    assert session_rows(database, cookie) == 0
    assert session_rows(database, fresh) == 1


def test_revoking_the_api_token_ends_its_sessions_only(api, browsers, database):
    token = api.user_token("releaser")
    revoked_browser, other_browser, admin_browser = browsers(), browsers(), browsers()
    sign_in(revoked_browser, token)
    sign_in(other_browser, token)
    sign_in(admin_browser, api.issued.token)
    for browser in (revoked_browser, other_browser, admin_browser):
        assert browser.get("/releases").status_code == 200

    # there is no API to revoke a token: an operator sets revoked_at in the database
    with database.engine.begin() as conn:
        changed = conn.execute(
            update(t.api_tokens)
            .where(t.api_tokens.c.token_hash == hash_token(token))
            .values(revoked_at=utc_now())
        )
        assert changed.rowcount == 1

    # every session opened with the token ends; the admin's, opened with another, does not
    refused(revoked_browser.get("/releases"), "/releases")
    refused(other_browser.get("/"), "/")
    assert admin_browser.get("/releases").status_code == 200
    # the token can open no new session, and the API refuses it too
    again = browsers().post("/login", data={"token": token})
    assert again.status_code == 401
    assert "not valid (or was revoked)" in again.text
    assert api.get("/environments", token=token).status_code == 401
