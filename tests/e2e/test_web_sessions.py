"""Web UI sessions over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: a session lasts
`SESSION_LIFETIME` on the server's clock and is refused afterwards (the API token it was opened
with keeps working), and revoking that API token ends the session at once; expired sessions are
deleted by the worker, not on sign-in. The sign-in form is protected against login CSRF (a
double-submit token in a pre-session cookie, and Origin/Referer), `next=` never leaves the site,
forms posted from another site are refused, cookies are `Secure` over HTTPS and pages are not
cached."""

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
from stella.bootstrap import Every, utc_now
from stella.services.auth import hash_token
from stella.services.web_sessions import (
    LOGIN_FORM_LIFETIME,
    SESSION_LIFETIME,
    purge_expired_sessions,
)
from stella.web.core import COOKIE, LOGIN_COOKIE
from tests.support.browser import LOGIN_CSRF, login_fields

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
    fields = login_fields(browser)
    response = browser.post("/login", data={"token": token, "next": "/releases", **fields})
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


def all_session_rows(database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.web_sessions)).scalar_one())


def test_a_session_expires_after_its_lifetime(api, browsers, clock, database):
    browser = browsers()
    signed_in_at = clock.now
    fields = login_fields(browser)
    response = browser.post("/login", data={"token": api.issued.token, "next": "/", **fields})
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

    # signing in again opens a new session
    clock.now = signed_in_at + SESSION_LIFETIME + timedelta(seconds=1)
    fresh = sign_in(browser, api.issued.token)
    assert fresh != cookie
    assert browser.get("/releases").status_code == 200
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
    anonymous = browsers()
    again = anonymous.post("/login", data={"token": token, **login_fields(anonymous)})
    assert again.status_code == 401
    assert "not valid (or was revoked)" in again.text
    assert api.get("/environments", token=token).status_code == 401


def test_sign_in_leaves_expired_sessions_to_the_worker(api, browsers, clock, container, database):
    """Deleting expired sessions is not on the sign-in path (it made every sign-in slower as
    sessions piled up): a periodic job of the worker does it, at most once a minute."""
    browser = browsers()
    signed_in_at = clock.now
    old = sign_in(browser, api.issued.token)
    clock.now = signed_in_at + SESSION_LIFETIME + timedelta(seconds=1)
    other_browser = browsers()
    other = sign_in(other_browser, api.issued.token)
    # sign-in touched neither the expired session nor any other row
    assert session_rows(database, old) == 1
    assert session_rows(database, other) == 1

    worker = replace(container, clock=clock).make_worker("web-sessions-test")
    purges = [
        task
        for task in worker.periodic
        if isinstance(task, Every) and getattr(task.action, "func", None) is purge_expired_sessions
    ]
    assert len(purges) == 1, "the worker does not purge expired sessions"
    assert purges[0]() >= 1
    assert session_rows(database, old) == 0
    assert session_rows(database, other) == 1
    assert other_browser.get("/releases").status_code == 200
    # paced: the next periodic pass (seconds later) does not delete again
    clock.now += SESSION_LIFETIME
    assert purges[0]() is None
    assert session_rows(database, other) == 1


def login_refused(response) -> None:
    """The sign-in page again, saying why, with a fresh token; no session, no stack trace."""
    assert response.status_code == 403, response.text
    assert "did not come from this site" in response.text
    assert '<form method="post" action="/login">' in response.text
    assert LOGIN_CSRF.search(response.text)
    assert "Traceback" not in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


def test_the_sign_in_form_is_protected_against_login_csrf(api, browsers, clock, database):
    token = api.issued.token
    before = all_session_rows(database)

    # the form's pre-session cookie: random, short-lived, HttpOnly, SameSite=Strict, /login only
    victim = browsers()
    page = victim.get("/login", params={"next": "/releases"})
    set_cookie = page.headers["set-cookie"]
    assert set_cookie.startswith(f"{LOGIN_COOKIE}=")
    for attribute in (
        "HttpOnly",
        "SameSite=strict",
        "Path=/login",
        f"Max-Age={int(LOGIN_FORM_LIFETIME.total_seconds())}",
    ):
        assert attribute in set_cookie, attribute
    assert "Secure" not in set_cookie  # plain HTTP here; see the HTTPS test
    field = LOGIN_CSRF.search(page.text)
    assert field
    assert field.group(1) == victim.cookies.get(LOGIN_COOKIE, path="/login")
    # a second tab shows the same token (the first tab's form keeps working)
    assert LOGIN_CSRF.findall(victim.get("/login").text) == [field.group(1)]

    # a hostile page posting the attacker's token: no field, or its own field (an attacker can
    # load its own sign-in page) that is not this browser's cookie
    login_refused(browsers().post("/login", data={"token": token}))
    attacker = browsers()
    attackers_field = login_fields(attacker)["login_csrf"]
    login_refused(browsers().post("/login", data={"token": token, "login_csrf": attackers_field}))
    login_refused(victim.post("/login", data={"token": token, "login_csrf": attackers_field}))
    login_refused(victim.post("/login", data={"token": token, "login_csrf": ""}))
    # right token, but the browser says the form came from another site
    good = {"token": token, "login_csrf": field.group(1), "next": "/releases"}
    login_refused(victim.post("/login", data=good, headers={"Origin": "https://evil.example"}))
    evil_page = {"Referer": "https://evil.example/login-csrf.html"}
    login_refused(victim.post("/login", data=good, headers=evil_page))
    login_refused(victim.post("/login", data=good, headers={"Origin": "http://testserver.evil"}))
    assert all_session_rows(database) == before

    # the victim's own form still works, from this site (Origin: null is what a browser sends
    # for our pages, whose Referrer-Policy is no-referrer); the token is used up
    fields = login_fields(victim)
    signed_in = victim.post(
        "/login", data={"token": token, **fields}, headers={"Origin": "http://testserver"}
    )
    assert signed_in.status_code == 303, signed_in.text
    assert 'stella_login=""' in signed_in.headers["set-cookie"]
    assert victim.cookies.get(LOGIN_COOKIE, path="/login") is None
    fresh = browsers()
    fields = login_fields(fresh)
    assert (
        fresh.post("/login", data={"token": token, **fields}, headers={"Origin": "null"})
    ).status_code == 303
    assert all_session_rows(database) == before + 2

    # a form left open past LOGIN_FORM_LIFETIME is refused; the page it gets works
    late = browsers()
    fields = login_fields(late)
    clock.now += LOGIN_FORM_LIFETIME
    refused = late.post("/login", data={"token": token, **fields})
    login_refused(refused)
    [renewed] = LOGIN_CSRF.findall(refused.text)
    assert renewed != fields["login_csrf"]
    again = late.post("/login", data={"token": token, "login_csrf": renewed})
    assert again.status_code == 303, again.text


def test_a_wrong_api_token_keeps_the_form_usable(api, browsers):
    browser = browsers()
    fields = login_fields(browser)
    wrong = browser.post("/login", data={"token": "stl_nope", **fields})
    assert wrong.status_code == 401
    assert "not valid (or was revoked)" in wrong.text
    retry = LOGIN_CSRF.search(wrong.text)
    assert retry
    assert retry.group(1) == fields["login_csrf"]
    right = browser.post("/login", data={"token": api.issued.token, "login_csrf": retry.group(1)})
    assert right.status_code == 303


def test_signing_in_again_ends_the_browsers_previous_session(api, browsers, database):
    browser = browsers()
    first = sign_in(browser, api.issued.token)
    second = sign_in(browser, api.user_token("viewer"))
    assert session_rows(database, first) == 0
    assert session_rows(database, second) == 1


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "/\\/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(api, browsers, target):
    browser = browsers()
    page = browser.get("/login", params={"next": target})
    assert 'name="next" value="/"' in page.text
    fields = login_fields(browser)
    response = browser.post("/login", data={"token": api.issued.token, "next": target, **fields})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_next_keeps_local_paths(api, browsers):
    browser = browsers()
    target = "/releases?q=api&environment=dev"
    fields = login_fields(browser)
    response = browser.post("/login", data={"token": api.issued.token, "next": target, **fields})
    assert response.headers["location"] == target


def test_forms_posted_from_another_site_are_refused(api, browsers, database):
    browser = browsers()
    cookie = sign_in(browser, api.issued.token)
    csrf = CSRF.search(browser.get("/releases").text)
    assert csrf
    for headers in (
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page.html"},
    ):
        refused = browser.post("/logout", data={"csrf": csrf.group(1)}, headers=headers)
        assert refused.status_code == 403, headers
        assert "another site" in refused.text
        assert session_rows(database, cookie) == 1
    # the same form from this site signs out
    done = browser.post(
        "/logout", data={"csrf": csrf.group(1)}, headers={"Origin": "http://testserver"}
    )
    assert done.status_code == 303
    assert session_rows(database, cookie) == 0


def test_cookies_are_secure_over_https(api, container, clock):
    app = create_app(replace(container, clock=clock))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        page = browser.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        fields = login_fields(browser)
        signed_in = browser.post("/login", data={"token": api.issued.token, **fields})
        assert signed_in.status_code == 303, signed_in.text
        cookies = signed_in.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith(f"{COOKIE}="))
        assert "Secure" in session
        assert all("Secure" in c for c in cookies)
        csrf = CSRF.search(browser.get("/releases").text)
        assert csrf
        out = browser.post("/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        assert "Secure" in out.headers["set-cookie"]


def test_pages_are_not_cached(api, browsers):
    browser = browsers()
    assert browser.get("/login").headers["cache-control"] == "no-store"
    sign_in(browser, api.issued.token)
    for path in ("/", "/releases", "/targets", "/agents", "/evidence", "/audit"):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
