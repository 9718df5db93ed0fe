"""The whole promotion path in a real headless Chromium against a server started on loopback:
sign in, promote dev → stage → prod from the UI, approve as a second user, separation of duties
refused in production, the run view updating live, drift shown, evidence downloaded; and the
refusals: login CSRF from a hostile page, expired session, missing CSRF token, a viewer
approving, unknown ids, HTML in input."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from stella.adapters.signing.dsse import verify_envelope
from tests.conftest import free_port
from tests.support.browser import chromium, shoot, sign_in
from tests.support.deploy import (
    deploy_server,
    docker_cli,
    docker_client,
    http_text,
    push_web_image,
    remove_containers,
    start_agent,
    wait_for,
    web_component,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path, registry_url):
    with deploy_server(request.param, tmp_path) as server:
        yield server


@pytest.fixture
def browser():
    with chromium() as launched:
        yield launched


def _estate(live, suffix: str, port: int, with_target: bool = True) -> dict[str, str]:
    with live.api() as api:
        for order, (slug, extra) in enumerate(
            (
                ("dev", {"gates": ["previous_environment"]}),
                (
                    "stage",
                    {
                        "gates": ["previous_environment", "approval"],
                        "approval_policy": {"required_approvals": 1},
                    },
                ),
                (
                    "prod",
                    {
                        "is_production": True,
                        "gates": ["previous_environment", "approval"],
                        "approval_policy": {"required_approvals": 1},
                    },
                ),
            ),
            1,
        ):
            body = {"name": slug.title(), "slug": slug, "promotion_order": order, **extra}
            assert api.post("/environments", json=body).status_code == 201
        target = {
            "name": f"dev-{suffix}",
            "environment": "dev",
            "type": "docker_host",
            "connection": {
                "container_name_prefix": f"ui-{suffix}-",
                "environment": {"PORT": str(port)},
                "sticker_path": f"/tmp/ui-sticker-{suffix}.json",
            },
        }
        if with_target:
            assert api.post("/targets", json=target).status_code == 201
        return {
            role: api.post("/users", json={"name": f"{role}-{suffix}", "role": role}).json()[
                "token"
            ]
            for role in ("approver", "viewer")
        }


def test_the_promotion_path_from_the_ui_alone(live, browser, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    container_name = f"ui-{suffix}-web"
    v1 = push_web_image(f"app/ui-{suffix}", "v1", f"ui v1 {suffix}\n", tmp_path)
    v2 = push_web_image(f"app/ui-{suffix}", "v2", f"ui v2 {suffix}\n", tmp_path)
    tokens = _estate(live, suffix, port)
    agent = None
    try:
        with live.api() as api:
            assert (
                api.post("/components", json=web_component("web", v1.repository)).status_code == 201
            )
            release = api.post(
                "/releases", json={"name": "web", "version": "1.0.0", "components": {"web": "v1"}}
            ).json()
        agent = start_agent(live, f"ui-agent-{suffix}", "dev", tmp_path)
        base = live.url
        context = browser.new_context(accept_downloads=True, timezone_id="Europe/Berlin")
        page = context.new_page()

        sign_in(page, base, live.token)
        assert page.get_by_role("heading", name="Pipeline").is_visible()
        for env in ("Dev", "Stage", "Prod"):
            assert page.get_by_role("heading", name=env).is_visible()
        shoot(page, "pipeline-empty")

        # release page → promote to dev → the promotion page; its run deploys
        page.get_by_role("link", name="Releases").click()
        page.get_by_role("link", name=re.compile("web")).first.click()
        assert v1.digest[:19] in page.content()
        shoot(page, "release")
        page.get_by_label("Promote to").select_option("dev")
        page.get_by_role("button", name="Promote").click()
        page.wait_for_url(re.compile(r"/promotions/"))
        shoot(page, "promotion-dev")

        # the run view: the DAG's deploy node turns green without a reload
        run_link = page.get_by_role("link", name=re.compile("run", re.I)).first
        wait_for(lambda: run_link.count() > 0, 30, "the promotion's run link")
        run_link.click()
        page.wait_for_url(re.compile(r"/runs/"))
        page.evaluate("window.__no_reload = 1")
        page.wait_for_selector("svg g.node.succeeded", timeout=90_000)
        assert page.evaluate("window.__no_reload") == 1
        shoot(page, "run")
        assert http_text(port) == v1.content

        # stage needs an approval: requested by the admin, approved by alice
        page.goto(f"{base}/releases/{release['id']}")
        page.get_by_label("Promote to").select_option("stage")
        page.get_by_role("button", name="Promote").click()
        page.wait_for_url(re.compile(r"/promotions/"))
        stage_url = page.url
        assert "awaiting approval" in page.content()

        alice = context.browser.new_context()
        alice_page = alice.new_page()
        sign_in(alice_page, base, tokens["approver"])
        alice_page.goto(stage_url)
        alice_page.get_by_label(re.compile("comment", re.I)).first.fill(
            "<img src=x onerror=alert(1)> looks good"
        )
        alice_page.get_by_role("button", name="Approve").click()
        alice_page.wait_for_url(re.compile(r"/promotions/"))
        assert "approved" in alice_page.locator("#promotion-state").inner_text()
        assert alice_page.locator("img[src=x]").count() == 0  # the comment is text, not markup
        assert "&lt;img src=x" in alice_page.content()
        shoot(alice_page, "promotion-approved")

        # prod: the requester may not approve their own production promotion
        page.goto(f"{base}/releases/{release['id']}")
        page.get_by_label("Promote to").select_option("prod")
        page.get_by_role("button", name="Promote").click()
        page.wait_for_url(re.compile(r"/promotions/"))
        prod_url = page.url
        page.get_by_role("button", name="Approve").click()
        page.wait_for_url(re.compile(r"/promotions/"))
        assert "separation of duties" in page.get_by_role("alert").inner_text()
        assert "awaiting approval" in page.content()
        alice_page.goto(prod_url)
        alice_page.get_by_role("button", name="Approve").click()
        alice_page.wait_for_url(re.compile(r"/promotions/"))
        assert "approved" in alice_page.locator("#promotion-state").inner_text()

        # someone replaces the dev container by hand: the targets page shows the drift
        docker_client().containers.get(container_name).remove(force=True)
        docker_cli(
            "run", "-d", "--init", "--network", "host", "--name", container_name,
            f"{v2.repository}@{v2.digest}", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www",
        )  # fmt: skip

        def drift_shown() -> bool:
            page.goto(f"{base}/targets")
            # the hand-made container is seen with the next inventory (until then: "missing")
            return "drifted" in page.content() and v2.digest[:19] in page.content()

        wait_for(drift_shown, 30, "drift on the targets page")
        assert v2.digest[:19] in page.content()
        shoot(page, "targets")
        page.goto(f"{base}/agents")
        assert f"ui-agent-{suffix}" in page.content()
        shoot(page, "agents")

        # evidence: open a packet, see its signature checked, download it
        page.goto(f"{base}/evidence")
        shoot(page, "evidence")
        packets = "a[href^='/evidence/']:not([href*='export']):not([href*='public-key'])"
        page.locator(packets).first.click()
        assert "Signature valid" in page.content()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download packet").click()
        envelope = json.loads(download.value.path().read_text())
        with live.api() as api:
            key = api.get("/keys").json()["keys"][0]["public_key_pem"]
        assert verify_envelope(envelope, key.encode())["_type"] == "https://in-toto.io/Statement/v1"
        page.goto(f"{base}/audit")
        assert "promotion.approved" in page.locator("tbody").inner_text()
        shoot(page, "audit")
        page.goto(f"{base}/")
        shoot(page, "pipeline")
        alice.close()
        context.close()
    finally:
        if agent is not None:
            agent.stop()
        remove_containers(container_name)


def test_refusals_in_the_browser(live, browser, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    tokens = _estate(live, suffix, free_port(), with_target=False)
    image = push_web_image(f"app/uirefuse-{suffix}", "v1", "refusals\n", tmp_path)
    with live.api() as api:
        api.post("/components", json=web_component("web", image.repository))
        release = api.post(
            "/releases", json={"name": "web", "version": "1.0.0", "components": {"web": "v1"}}
        ).json()
        api.post("/promotions", json={"release_id": release["id"], "target_environment": "dev"})
        stage = api.post(
            "/promotions", json={"release_id": release["id"], "target_environment": "stage"}
        ).json()
    base = live.url

    # login CSRF: a hostile page (another origin) that posts the sign-in form with its own API
    # token does not sign this browser in: the login page comes back with a 403 and the reason
    hostile = browser.new_context()
    evil = hostile.new_page()
    evil_url = "http://127.0.0.1:9/login-csrf.html"  # served by the route below, no server
    form = (
        f'<form id="f" method="post" action="{base}/login">'
        f'<input name="token" value="{tokens["viewer"]}">'
        '<input name="login_csrf" value="1700000000.guessed-guessed-guessed-guessed-x">'
        '<input name="next" value="/"></form><script>f.submit()</script>'
    )
    evil.route(evil_url, lambda route: route.fulfill(content_type="text/html", body=form))
    with evil.expect_navigation(url=f"{base}/login"):
        evil.goto(evil_url)
    assert "did not come from this site" in evil.content()
    evil.goto(f"{base}/")
    assert "/login" in evil.url
    assert not [c for c in hostile.cookies() if c["name"] == "stella_session"]
    hostile.close()

    # an expired session (here: a cookie the server does not know) goes back to sign-in
    context = browser.new_context()
    host = base.removeprefix("http://").split(":")[0]
    context.add_cookies([{"name": "stella_session", "value": "stale", "domain": host, "path": "/"}])
    page = context.new_page()
    page.goto(f"{base}/promotions/{stage['id']}")
    assert "/login" in page.url
    assert "session has expired" in page.content()

    # a viewer sees no Approve button, and posting the form anyway is refused
    sign_in(page, base, tokens["viewer"])
    page.goto(f"{base}/promotions/{stage['id']}")
    assert page.get_by_role("button", name="Approve").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(
        f"{base}/promotions/{stage['id']}/approve",
        form={"csrf": csrf, "comment": "sneaky"},
        max_redirects=0,
    )
    assert refused.status in {303, 403}
    with live.api() as api:
        assert api.get(f"/promotions/{stage['id']}").json()["state"] == "awaiting_approval"

    # an approver whose form lost its CSRF token is refused, nothing changes
    approver = browser.new_context()
    approver_page = approver.new_page()
    sign_in(approver_page, base, tokens["approver"])
    approver_page.goto(f"{base}/promotions/{stage['id']}")
    approver_page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    approver_page.get_by_role("button", name="Approve").click()
    assert "CSRF" in approver_page.content()
    with live.api() as api:
        assert api.get(f"/promotions/{stage['id']}").json()["state"] == "awaiting_approval"

    # unknown ids: a friendly page, not a stack trace
    for path in (f"/promotions/{uuid.uuid4()}", f"/releases/{uuid.uuid4()}", "/runs/nope"):
        response = approver_page.goto(f"{base}{path}")
        assert response.status == 404, path
        assert "Back to the pipeline" in approver_page.content()
    approver.close()
    context.close()
