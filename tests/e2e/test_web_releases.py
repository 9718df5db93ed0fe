"""The web UI's releases, promotions and workflow-run pages, through FastAPI's TestClient.

Each signed-in user gets its own client (its own cookie jar) on the one application.
"""

from __future__ import annotations

import json
import re
import uuid
from html import unescape

import pytest
from fastapi.testclient import TestClient

from stella.web.pages import releases as releases_page
from tests.support.browser import login_fields
from tests.support.promotions import build_estate
from tests.support.workflows import start_worker, wait_for_run


@pytest.fixture
def estate(api, registry_url, repository):
    return build_estate(api, registry_url, repository)


@pytest.fixture
def worker(container, tmp_path):
    running = start_worker(container, tmp_path / "work")
    yield running
    running.stop()


_OPEN: list[TestClient] = []


@pytest.fixture(autouse=True)
def close_browsers():
    yield
    while _OPEN:
        _OPEN.pop().close()


def sign_in(client: TestClient, token: str) -> TestClient:
    """A browser of its own (its own cookie jar), signed in with `token`."""
    browser = TestClient(client.app, raise_server_exceptions=False)
    _OPEN.append(browser)
    response = browser.post(
        "/login",
        data={"token": token, "next": "/releases", **login_fields(browser)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert "stella_session" in browser.cookies
    return browser


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post_form(browser: TestClient, path: str, csrf: str | None, **fields: str):
    data = dict(fields) | ({"csrf": csrf} if csrf is not None else {})
    return browser.post(path, data=data, follow_redirects=False)


def promote(api, release_id: str, target: str, token: str | None = None) -> dict:
    response = api.post(
        "/promotions", {"release_id": release_id, "target_environment": target}, token=token
    )
    assert response.status_code == 201, response.text
    return response.json()


def create_release(api, name: str, version: str, **extra: str) -> dict:
    body = {"name": name, "version": version, "components": {"api": "v1"}, **extra}
    response = api.post("/releases", body)
    assert response.status_code == 201, response.text
    return response.json()


def flash_error(html: str) -> str:
    found = re.search(r'<p class="flash bad" role="alert">(.*?)</p>', html, re.S)
    return unescape(found.group(1)) if found else ""


def flash_notice(html: str) -> str:
    found = re.search(r'<p class="flash ok" role="status">(.*?)</p>', html, re.S)
    return unescape(found.group(1)) if found else ""


def test_a_link_cannot_put_a_message_on_a_page(api, client, estate):
    """Notices travel in a one-time cookie set by the POST, never in the address: a crafted
    link (`?notice=…`, `?error=…`) shows nothing."""
    browser = sign_in(client, api.issued.token)
    page = browser.get(
        f"/releases/{estate.release_id}",
        params={"notice": "Approved by the CISO", "error": "Call +1 555 0100 now"},
    ).text
    assert "Approved by the CISO" not in page
    assert "555 0100" not in page
    assert (flash_notice(page), flash_error(page)) == ("", "")


def buttons(html: str) -> list[str]:
    return [b.strip() for b in re.findall(r"<button[^>]*>([^<]*)</button>", html)]


def test_release_list_empty_state_search_filter_and_pages(api, client, registry_url, repository):
    browser = sign_in(client, api.issued.token)
    empty = browser.get("/releases")
    assert empty.status_code == 200
    assert "No releases yet" in empty.text
    assert "stella release create --name api --version 1.0.0 -c api=v1" in empty.text

    estate = build_estate(api, registry_url, repository)
    web = create_release(api, "web", "2.0.0", source_ref="<script>alert(1)</script>")
    old = create_release(api, "web", "0.9.0")
    assert api.post(f"/releases/{old['id']}/deprecate").status_code == 200

    listed = browser.get("/releases").text
    for release_id in (estate.release_id, web["id"], old["id"]):
        assert f'href="/releases/{release_id}"' in listed
    assert estate.digest[:19] in listed

    found = browser.get("/releases", params={"q": "2.0"}).text
    assert f'href="/releases/{web["id"]}"' in found
    assert f'href="/releases/{estate.release_id}"' not in found
    by_name = browser.get("/releases", params={"q": "WEB"}).text
    assert f'href="/releases/{web["id"]}"' in by_name
    assert f'href="/releases/{old["id"]}"' in by_name
    assert f'href="/releases/{estate.release_id}"' not in by_name
    exact = browser.get("/releases", params={"q": "api@1.0.0"}).text
    assert f'href="/releases/{estate.release_id}"' in exact

    deprecated = browser.get("/releases", params={"state": "deprecated"}).text
    assert f'href="/releases/{old["id"]}"' in deprecated
    assert f'href="/releases/{web["id"]}"' not in deprecated
    none = browser.get("/releases", params={"q": "nothing-like-this"}).text
    assert "No release matches" in none

    detail = browser.get(f"/releases/{web['id']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "<script>alert(1)" not in detail

    hostile = browser.get("/releases", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in hostile
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile


def test_release_list_pages_with_the_cursor(api, client, estate, monkeypatch):
    create_release(api, "web", "2.0.0")
    create_release(api, "web", "2.1.0")
    monkeypatch.setattr(releases_page, "PAGE_SIZE", 1)
    browser = sign_in(client, api.issued.token)
    for params in ({}, {"q": "web"}):
        seen, path, query = [], "/releases", dict(params) or None
        for _ in range(5):
            html = browser.get(path, params=query).text
            seen += re.findall(r'<th scope="row"><a href="/releases/([0-9a-f-]{36})">', html)
            more = re.search(r'href="(/releases\?[^"]*cursor=[^"]+)"', html)
            if not more:
                break
            path, query = unescape(more.group(1)), None
        expected = 3 if not params else 2
        assert len(seen) == len(set(seen)) == expected, (params, seen)


def test_release_page_shows_components_verdicts_and_promotes(api, client, estate):
    browser = sign_in(client, api.issued.token)
    page = browser.get(f"/releases/{estate.release_id}")
    assert page.status_code == 200
    html = page.text
    assert estate.digest in html
    assert "Security verdicts" in html
    for slug in ("dev", "stage", "prod"):
        assert f'<th scope="col">{slug}</th>' in html
    assert re.search(r'class="state s-(pass|fail|unknown)"', html)
    assert "not promoted" in html
    assert "Promote</button>" in html
    by_name = browser.get("/releases/api@1.0.0")
    assert by_name.status_code == 200
    assert estate.digest in by_name.text

    done = post_form(
        browser,
        f"/releases/{estate.release_id}/promote",
        csrf_of(html),
        environment="dev",
    )
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/promotions/")
    promotion_id = location.split("?")[0].rsplit("/", 1)[1]
    assert api.get(f"/promotions/{promotion_id}").json()["state"] == "approved"
    shown = browser.get(location).text
    assert "Gates" in shown
    assert "previous environment" in shown
    assert "requested" in shown

    again = browser.get(f"/releases/{estate.release_id}").text
    assert f'href="/promotions/{promotion_id}"' in again

    twice = post_form(
        browser, f"/releases/{estate.release_id}/promote", csrf_of(html), environment="dev"
    )
    assert twice.status_code == 303
    assert twice.headers["location"] == f"/releases/{estate.release_id}"
    assert "already has promotion" in flash_error(browser.get(twice.headers["location"]).text)

    viewer = sign_in(client, api.user_token("viewer"))
    seen = viewer.get(f"/releases/{estate.release_id}").text
    assert estate.digest in seen
    assert "Promote</button>" not in seen
    refused = post_form(
        viewer, f"/releases/{estate.release_id}/promote", csrf_of(seen), environment="stage"
    )
    assert "may not request promotions" in flash_error(viewer.get(refused.headers["location"]).text)
    assert len(api.get("/promotions").json()["items"]) == 1


def test_promotion_page_buttons_follow_the_role(api, client, estate):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    assert stage["state"] == "awaiting_approval"
    path = f"/promotions/{stage['id']}"

    approver = sign_in(client, estate.approvers[0])
    html = approver.get(path).text
    assert {"Approve", "Reject"} <= set(buttons(html))
    assert "Re-evaluate" not in buttons(html)  # an approver does not manage releases
    assert "Gates" in html
    assert "approval" in html
    assert 'data-stream="/promotions/' in html

    viewer = sign_in(client, api.user_token("viewer"))
    seen = viewer.get(path)
    assert seen.status_code == 200
    assert not {"Approve", "Reject", "Cancel", "Re-evaluate"} & set(buttons(seen.text))
    refused = post_form(viewer, f"{path}/approve", csrf_of(seen.text), comment="sure")
    assert refused.status_code == 303
    message = flash_error(viewer.get(refused.headers["location"]).text)
    assert "may not approve promotions" in message
    after = api.get(f"/promotions/{stage['id']}").json()
    assert (after["state"], after["approvals"]) == ("awaiting_approval", [])

    admin = sign_in(client, api.issued.token)
    assert {"Approve", "Reject", "Cancel", "Re-evaluate"} <= set(buttons(admin.get(path).text))
    again = post_form(admin, f"{path}/reevaluate", csrf_of(admin.get(path).text))
    assert (
        flash_notice(admin.get(again.headers["location"]).text) == "The gates were evaluated again."
    )


def test_approval_comment_is_escaped_and_recorded(api, client, estate):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    path = f"/promotions/{stage['id']}"
    approver = sign_in(client, estate.approvers[0])
    comment = "<script>alert(1)</script>"
    done = post_form(approver, f"{path}/approve", csrf_of(approver.get(path).text), comment=comment)
    assert done.status_code == 303
    assert done.headers["location"] == path
    html = approver.get(path).text
    assert flash_notice(html) != ""
    assert flash_notice(approver.get(path).text) == "", "a notice is shown once"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    promotion = api.get(f"/promotions/{stage['id']}").json()
    assert promotion["state"] == "approved"
    assert promotion["approvals"][0]["comment"] == comment
    assert "Approve" not in buttons(html)  # decided: no more actions
    assert "Signed record" in html
    assert promotion["decision"]["envelope_digest"][:19] in html
    assert re.search(r'href="/evidence/[0-9a-f-]{36}"', html)


def test_self_approval_in_production_is_refused_with_the_reason(api, client, estate):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    api.post(f"/promotions/{stage['id']}/approve", {}, token=estate.approvers[0])
    admin = sign_in(client, api.issued.token)
    release_html = admin.get(f"/releases/{estate.release_id}").text
    created = post_form(
        admin, f"/releases/{estate.release_id}/promote", csrf_of(release_html), environment="prod"
    )
    path = created.headers["location"].split("?")[0]
    prod_id = path.rsplit("/", 1)[1]
    assert api.get(f"/promotions/{prod_id}").json()["state"] == "awaiting_approval"
    html = admin.get(path).text
    own = post_form(admin, f"{path}/approve", csrf_of(html), comment="mine")
    assert own.status_code == 303
    assert own.headers["location"] == path
    message = flash_error(admin.get(own.headers["location"]).text)
    assert message.startswith("separation of duties")
    assert api.get(f"/promotions/{prod_id}").json()["approvals"] == []

    rejected = post_form(admin, f"{path}/reject", csrf_of(html), comment="not today")
    assert flash_notice(admin.get(rejected.headers["location"]).text) != ""
    assert api.get(f"/promotions/{prod_id}").json()["state"] == "rejected"
    cancelled = post_form(admin, f"{path}/cancel", csrf_of(html))
    assert "cannot become cancelled" in flash_error(admin.get(cancelled.headers["location"]).text)


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_forms_without_the_right_csrf_token_change_nothing(api, client, estate, token):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    approver = sign_in(client, estate.approvers[0])
    refused = post_form(approver, f"/promotions/{stage['id']}/approve", token, comment="x")
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert "<html" in refused.text
    assert api.get(f"/promotions/{stage['id']}").json()["approvals"] == []

    admin = sign_in(client, api.issued.token)
    for path in (f"/promotions/{stage['id']}/cancel", f"/promotions/{stage['id']}/reevaluate"):
        assert post_form(admin, path, token).status_code == 403
    assert api.get(f"/promotions/{stage['id']}").json()["state"] == "awaiting_approval"
    promoted = post_form(admin, f"/releases/{estate.release_id}/promote", token, environment="prod")
    assert promoted.status_code == 403
    assert len(api.get("/promotions").json()["items"]) == 2


def test_unknown_ids_give_the_friendly_not_found_page(api, client):
    browser = sign_in(client, api.issued.token)
    for path in (
        f"/releases/{uuid.uuid4()}",
        "/releases/nothing@1.0.0",
        f"/promotions/{uuid.uuid4()}",
        "/promotions/not-an-id",
        f"/runs/{uuid.uuid4()}",
        "/runs/not-an-id",
        f"/runs/{uuid.uuid4()}/stream",
        f"/promotions/{uuid.uuid4()}/stream",
    ):
        response = browser.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text, path
        assert "<html" in response.text, path


def test_pages_and_streams_need_a_session(client):
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    _OPEN.append(anonymous)
    run_id = uuid.uuid4()
    for path in ("/releases", f"/runs/{run_id}/stream", f"/promotions/{run_id}/stream"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path


def first_message(browser: TestClient, path: str) -> dict:
    with browser.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        # the stream carries the signed-in user's data: no cache may keep it
        assert response.headers["cache-control"] == "no-store"
        for line in response.iter_lines():
            if line.startswith("data: "):
                return json.loads(line.removeprefix("data: "))
    raise AssertionError(f"{path} sent no message")


def test_run_page_draws_the_dag_and_streams_node_states(api, client, worker):
    wait = {"type": "wait", "config": {"duration": "1ms"}}
    template = {
        "name": "diamond",
        "steps": [
            {"id": "build", **wait},
            {"id": "test", "depends_on": ["build"], **wait},
            {"id": "scan", "depends_on": ["build"], **wait},
            {"id": "ship", "depends_on": ["test", "scan"], **wait},
        ],
    }
    assert api.post("/workflows", template).status_code == 201
    started = api.post("/workflow-runs", {"workflow": "diamond", "inputs": {}})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    assert wait_for_run(api, run_id)["state"] == "succeeded"

    browser = sign_in(client, api.issued.token)
    page = browser.get(f"/runs/{run_id}")
    assert page.status_code == 200
    html = page.text
    svg = html[html.index("<svg") : html.index("</svg>")]
    nodes = re.findall(r'<g id="node-([^"]+)" class="node ([a-z_]+)">', svg)
    assert sorted(nodes) == sorted((s, "succeeded") for s in ("build", "test", "scan", "ship"))
    assert svg.count('class="edge"') == 4
    assert 'data-from="build" data-to="test"' in svg
    assert "run.succeeded" in html  # the events
    assert "Attempts" in html

    message = first_message(browser, f"/runs/{run_id}/stream")
    assert message["classes"] == {
        f"node-{s}": "node succeeded" for s in ("build", "test", "scan", "ship")
    }
    assert "succeeded" in message["html"]["run-state"]
    assert "ship" in message["html"]["run-steps"]
    assert message["done"] is True


def test_promotion_stream_sends_the_live_part(api, client, estate):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    browser = sign_in(client, api.user_token("viewer"))
    message = first_message(browser, f"/promotions/{stage['id']}/stream")
    assert "awaiting approval" in message["html"]["promotion-state"]
    assert "Gates" in message["html"]["promotion-live"]
    assert message["classes"] == {"promotion-actions": "card"}
    assert message["done"] is False
