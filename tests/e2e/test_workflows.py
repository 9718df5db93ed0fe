"""Workflow templates and runs through the API, executed by a real in-process worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.support.workflows import events, start_worker, wait_for_run, wait_for_step


@pytest.fixture
def worker(container, tmp_path):
    running = start_worker(container, tmp_path / "work")
    yield running
    running.stop()


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for init to reap it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        time.sleep(0.05)
    return True


def save(api, template: dict) -> dict:
    response = api.post("/workflows", template)
    assert response.status_code in (200, 201), response.text
    return response.json()


def start(api, workflow: str, **inputs) -> str:
    response = api.post("/workflow-runs", {"workflow": workflow, "inputs": inputs})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def step(run: dict, step_id: str) -> dict:
    return next(s for s in run["steps"] if s["id"] == step_id)


def test_outputs_feed_later_steps_and_when_skips(api, worker):
    save(
        api,
        {
            "name": "flow",
            "inputs": [{"name": "who", "type": "string", "required": True}],
            "steps": [
                {
                    "id": "build",
                    "type": "script",
                    "config": {"command": "echo tag=v-${{ inputs.who }} >> $STELLA_OUTPUT"},
                },
                {
                    "id": "use",
                    "type": "script",
                    "depends_on": ["build"],
                    "config": {
                        "command": [
                            "sh",
                            "-c",
                            "echo got=$0 >> $STELLA_OUTPUT",
                            "${{ steps.build.outputs.tag }}",
                        ]
                    },
                },
                {
                    "id": "only-prod",
                    "type": "fail",
                    "depends_on": ["build"],
                    "when": "inputs.who == 'prod'",
                },
                {
                    "id": "last",
                    "type": "wait",
                    "depends_on": ["use", "only-prod"],
                    "config": {"duration": "10ms"},
                },
            ],
        },
    )
    run = wait_for_run(api, start(api, "flow", who="bob"))
    assert run["state"] == "succeeded", run
    assert step(run, "build")["outputs"] == {"tag": "v-bob"}
    assert step(run, "use")["outputs"] == {"got": "v-bob"}
    assert step(run, "only-prod")["state"] == "skipped"
    assert step(run, "last")["state"] == "succeeded"
    assert (run["steps_done"], run["steps_total"]) == (4, 4)


def test_failures_retry_with_backoff_until_success(api, worker, tmp_path):
    counter = tmp_path / "count"
    save(
        api,
        {
            "name": "flaky",
            "steps": [
                {
                    "id": "flaky",
                    "type": "script",
                    "retry": {"max_attempts": 3, "backoff": "50ms"},
                    "config": {"command": f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"},
                }
            ],
        },
    )
    run = wait_for_run(api, start(api, "flaky"))
    assert run["state"] == "succeeded"
    assert step(run, "flaky")["attempts"] == 3
    kinds = [e["type"] for e in events(api, run["id"]) if e["step_id"] == "flaky"]
    assert kinds.count("step.retrying") == 2
    assert kinds.count("step.succeeded") == 1


def test_retries_are_exhausted_then_the_run_fails(api, worker):
    save(
        api,
        {
            "name": "doomed",
            "on_failure": "stop",
            "steps": [
                {
                    "id": "a",
                    "type": "fail",
                    "config": {"message": "nope"},
                    "retry": {"max_attempts": 2, "backoff": "10ms"},
                },
                {"id": "b", "type": "wait", "depends_on": ["a"], "config": {"duration": "1ms"}},
            ],
        },
    )
    run = wait_for_run(api, start(api, "doomed"))
    assert run["state"] == "failed"
    assert run["error"] == "step a failed: nope"
    assert (step(run, "a")["state"], step(run, "a")["attempts"]) == ("failed", 2)
    assert step(run, "b")["state"] == "cancelled"


def test_a_step_that_never_ends_is_killed_at_its_timeout(api, worker, tmp_path):
    pid_file = tmp_path / "pid"
    save(
        api,
        {
            "name": "hang",
            "on_failure": "stop",
            "steps": [
                {
                    "id": "hang",
                    "type": "script",
                    "timeout": "500ms",
                    "config": {"command": f"echo $$ > {pid_file}; exec sleep 60"},
                }
            ],
        },
    )
    started = time.monotonic()
    run = wait_for_run(api, start(api, "hang"), timeout=20)
    assert run["state"] == "failed"
    assert step(run, "hang")["error"] == "timed out after 0.5s"
    assert time.monotonic() - started < 10
    assert not alive(int(pid_file.read_text()))


def test_megabytes_of_output_are_truncated_not_kept(api, worker):
    save(
        api,
        {
            "name": "loud",
            "steps": [
                {
                    "id": "loud",
                    "type": "script",
                    "config": {
                        "command": "head -c 20000000 /dev/zero | tr '\\0' 'x'; echo; echo the-end"
                    },
                }
            ],
        },
    )
    run = wait_for_run(api, start(api, "loud"), timeout=60)
    assert run["state"] == "succeeded"
    detail = api.get(f"/workflow-runs/{run['id']}/steps/loud").json()
    assert len(detail["log"]) < 70_000
    assert "bytes of output truncated" in detail["log"]
    assert detail["log"].rstrip().endswith("the-end")


def test_failed_run_rolls_back_completed_steps_in_reverse_order(api, worker, tmp_path):
    trail = tmp_path / "trail"

    def step_with_rollback(step_id, deps):
        return {
            "id": step_id,
            "type": "script",
            "depends_on": deps,
            "rollback": True,
            "config": {
                "command": f"echo do-{step_id} >> {trail}",
                "rollback_command": f"echo undo-{step_id} >> {trail}",
            },
        }

    save(
        api,
        {
            "name": "undo",
            "steps": [
                step_with_rollback("first", []),
                step_with_rollback("second", ["first"]),
                {
                    "id": "plain",
                    "type": "wait",
                    "depends_on": ["first"],
                    "config": {"duration": "1ms"},
                },
                {"id": "boom", "type": "fail", "depends_on": ["second", "plain"]},
            ],
        },
    )
    run = wait_for_run(api, start(api, "undo"))
    assert run["state"] == "rolled_back"
    assert trail.read_text().split() == ["do-first", "do-second", "undo-second", "undo-first"]
    assert [step(run, s)["state"] for s in ("first", "second", "plain", "boom")] == [
        "rolled_back",
        "rolled_back",
        "succeeded",
        "failed",
    ]


def test_on_failure_stop_leaves_completed_steps_alone(api, worker, tmp_path):
    trail = tmp_path / "trail"
    save(
        api,
        {
            "name": "stopper",
            "on_failure": "stop",
            "steps": [
                {
                    "id": "a",
                    "type": "script",
                    "rollback": True,
                    "config": {"command": "true", "rollback_command": f"echo undo >> {trail}"},
                },
                {"id": "b", "type": "fail", "depends_on": ["a"]},
            ],
        },
    )
    run = wait_for_run(api, start(api, "stopper"))
    assert run["state"] == "failed"
    assert not trail.exists()


def test_cancel_kills_the_running_step(api, worker, tmp_path):
    pid_file = tmp_path / "pid"
    save(
        api,
        {
            "name": "long",
            "steps": [
                {
                    "id": "sleepy",
                    "type": "script",
                    "config": {"command": f"echo $$ > {pid_file}; exec sleep 60"},
                },
                {
                    "id": "after",
                    "type": "wait",
                    "depends_on": ["sleepy"],
                    "config": {"duration": "1ms"},
                },
            ],
        },
    )
    run_id = start(api, "long")
    wait_for_step(api, run_id, "sleepy", {"running"})
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    cancelled = api.post(f"/workflow-runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] is True
    run = wait_for_run(api, run_id, timeout=20)
    assert run["state"] == "cancelled"
    assert [step(run, "sleepy")["state"], step(run, "after")["state"]] == ["cancelled", "cancelled"]
    assert not alive(int(pid_file.read_text()))
    again = api.post(f"/workflow-runs/{run_id}/cancel")
    assert again.status_code == 409


def test_cancelling_a_run_that_is_rolling_back_stops_the_rollback(api, worker, tmp_path):
    trail = tmp_path / "trail"
    save(
        api,
        {
            "name": "slow-undo",
            "steps": [
                {
                    "id": "a",
                    "type": "script",
                    "rollback": True,
                    "config": {"command": "true", "rollback_command": f"echo undo-a >> {trail}"},
                },
                {
                    "id": "b",
                    "type": "script",
                    "rollback": True,
                    "depends_on": ["a"],
                    "config": {
                        "command": "true",
                        "rollback_command": f"echo start-undo-b >> {trail}; sleep 30",
                    },
                },
                {"id": "c", "type": "fail", "depends_on": ["b"]},
            ],
        },
    )
    run_id = start(api, "slow-undo")
    wait_for_run(api, run_id, states={"rolling_back"})
    for _ in range(200):
        if trail.exists():
            break
        time.sleep(0.05)
    assert api.post(f"/workflow-runs/{run_id}/cancel").status_code == 200
    run = wait_for_run(api, run_id, timeout=20)
    assert run["state"] == "cancelled"
    assert trail.read_text().split() == ["start-undo-b"]  # a was never rolled back
    assert step(run, "a")["state"] == "succeeded"


def test_approval_step_waits_for_a_person(api, worker):
    save(
        api,
        {
            "name": "gated",
            "steps": [
                {"id": "ask", "type": "approval", "config": {"message": "ship it?"}},
                {
                    "id": "ship",
                    "type": "wait",
                    "depends_on": ["ask"],
                    "config": {"duration": "1ms"},
                },
            ],
        },
    )
    run_id = start(api, "gated")
    wait_for_step(api, run_id, "ask", {"waiting"})
    viewer = api.user_token("viewer")
    denied = api.post(f"/workflow-runs/{run_id}/steps/ask/approve", {"comment": "x"}, token=viewer)
    assert denied.status_code == 403
    approver = api.user_token("approver")
    approved = api.post(
        f"/workflow-runs/{run_id}/steps/ask/approve", {"comment": "go"}, token=approver
    )
    assert approved.status_code == 200
    run = wait_for_run(api, run_id)
    assert run["state"] == "succeeded"
    assert step(run, "ask")["outputs"]["comment"] == "go"
    assert api.post(f"/workflow-runs/{run_id}/steps/ask/approve").status_code == 409


def test_rejection_fails_the_run(api, worker):
    save(
        api, {"name": "gated2", "on_failure": "stop", "steps": [{"id": "ask", "type": "approval"}]}
    )
    run_id = start(api, "gated2")
    wait_for_step(api, run_id, "ask", {"waiting"})
    api.post(f"/workflow-runs/{run_id}/steps/ask/reject", {"reason": "not today"})
    run = wait_for_run(api, run_id)
    assert run["state"] == "failed"
    assert step(run, "ask")["error"] == "rejected by admin: not today"


def test_approval_without_a_decision_times_out(api, worker):
    save(
        api,
        {
            "name": "gated3",
            "on_failure": "stop",
            "steps": [{"id": "ask", "type": "approval", "timeout": "300ms"}],
        },
    )
    run = wait_for_run(api, start(api, "gated3"), timeout=20)
    assert run["state"] == "failed"
    assert step(run, "ask")["error"] == "no decision before the deadline"


def test_same_template_and_inputs_give_the_same_event_sequence(api, container, tmp_path):
    """A 50-step DAG run 20 times: the recorded event sequences are identical."""
    steps = []
    for i in range(50):
        deps = [f"s{j:02d}" for j in range(max(0, i - 3), i) if (i * 7 + j) % 3 == 0]
        steps.append(
            {"id": f"s{i:02d}", "type": "wait", "depends_on": deps, "config": {"duration": "0s"}}
        )
    save(api, {"name": "dag50", "steps": steps})
    one_at_a_time = start_worker(container, tmp_path / "work", "serial", concurrency=1)
    try:
        sequences = set()
        for _ in range(20):
            run = wait_for_run(api, start(api, "dag50"), timeout=60)
            assert run["state"] == "succeeded"
            sequences.add(tuple((e["type"], e["step_id"]) for e in events(api, run["id"])))
    finally:
        one_at_a_time.stop()
    assert len(sequences) == 1
    assert len(next(iter(sequences))) == 2 + 50 * 3


def test_event_log_pages_with_a_cursor(api, worker):
    save(
        api, {"name": "tiny", "steps": [{"id": "a", "type": "wait", "config": {"duration": "0s"}}]}
    )
    run = wait_for_run(api, start(api, "tiny"))
    first = api.get(f"/workflow-runs/{run['id']}/events", params={"limit": 2}).json()
    assert [e["seq"] for e in first["items"]] == [1, 2]
    rest = api.get(
        f"/workflow-runs/{run['id']}/events", params={"cursor": first["next_cursor"]}
    ).json()
    assert [e["type"] for e in rest["items"]] == ["step.started", "step.succeeded", "run.succeeded"]


def test_server_sent_events_stream_the_run_until_it_ends(api, worker):
    save(
        api,
        {
            "name": "streamed",
            "steps": [{"id": "a", "type": "wait", "config": {"duration": "200ms"}}],
        },
    )
    run_id = start(api, "streamed")
    with api.http.stream(
        "GET", f"/api/v1/workflow-runs/{run_id}/events/stream", headers=api.headers
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    kinds = [
        line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")
    ]
    assert kinds[0] == "run.created"
    assert kinds[-1] == "run.succeeded"


def test_yaml_templates_are_accepted_and_versioned_by_content(api):
    text = yaml.safe_dump(
        {"name": "yml", "steps": [{"id": "a", "type": "wait", "config": {"duration": "1s"}}]}
    )
    first = api.request(
        "POST", "/workflows", content=text.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert (first.status_code, first.json()["version"]) == (201, 1)
    same = api.request(
        "POST", "/workflows", content=text.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert (same.status_code, same.json()["version"]) == (200, 1)
    changed = api.post(
        "/workflows",
        {"name": "yml", "steps": [{"id": "a", "type": "wait", "config": {"duration": "2s"}}]},
    )
    assert (changed.status_code, changed.json()["version"]) == (201, 2)
    assert api.get("/workflows/yml/versions/1").json()["steps"][0]["config"] == {"duration": "1s"}


@pytest.mark.parametrize(
    ("template", "field", "fragment"),
    [
        (
            {
                "name": "c",
                "steps": [
                    {"id": "a", "type": "wait", "config": {"duration": "1s"}, "depends_on": ["c"]},
                    {"id": "b", "type": "wait", "config": {"duration": "1s"}, "depends_on": ["a"]},
                    {"id": "c", "type": "wait", "config": {"duration": "1s"}, "depends_on": ["b"]},
                ],
            },
            "steps",
            "dependency cycle: a → c → b → a",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "teleport"}]},
            "steps.0.type",
            "unknown step type 'teleport'",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "depends_on": ["ghost"]}]},
            "steps.0.depends_on",
            "unknown step 'ghost'",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "script", "config": {}}]},
            "steps.0.config.command",
            "required",
        ),
        (
            {
                "name": "c",
                "steps": [{"id": "a", "type": "script", "config": {"command": "x", "shell": 1}}],
            },
            "steps.0.config.shell",
            "unknown key",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "when": "inputs.x =="}]},
            "steps.0.when",
            "bad expression",
        ),
        (
            {
                "name": "c",
                "steps": [
                    {"id": "a", "type": "script", "config": {"command": "${{ __import__('os') }}"}}
                ],
            },
            "steps.0.config",
            "bad expression",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "when": "inputs.nope == 1"}]},
            "steps.0.when",
            "names no declared input",
        ),
        (
            {
                "name": "c",
                "steps": [
                    {"id": "a", "type": "fail"},
                    {"id": "b", "type": "fail", "when": "steps.a.outputs.x == 1"},
                ],
            },
            "steps.1.when",
            "not a dependency",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "timeout": "48h"}]},
            "steps.0.timeout",
            "between",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "timeout": "soon"}]},
            "steps.0.timeout",
            "not a duration",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "rollback": True}]},
            "steps.0.rollback",
            "cannot roll back",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail"}, {"id": "a", "type": "fail"}]},
            "steps.1.id",
            "duplicate",
        ),
        ({"name": "c", "steps": []}, "steps", "at least one step"),
        ({"name": "c", "steps": [{"id": "A!", "type": "fail"}]}, "steps.0.id", "lowercase"),
        (
            {
                "name": "c",
                "inputs": [{"name": "n", "type": "color"}],
                "steps": [{"id": "a", "type": "fail"}],
            },
            "inputs.0.type",
            "one of",
        ),
        (
            {"name": "c", "steps": [{"id": "a", "type": "fail", "colour": 1}]},
            "steps.0.colour",
            "unknown field",
        ),
    ],
    ids=[
        "cycle",
        "unknown-type",
        "dangling-dependency",
        "missing-config",
        "unknown-config-key",
        "unparseable-when",
        "eval-attempt",
        "unknown-input",
        "non-dependency-output",
        "timeout-bounds",
        "bad-duration",
        "no-rollback",
        "duplicate-id",
        "no-steps",
        "bad-id",
        "bad-input-type",
        "unknown-field",
    ],
)
def test_invalid_templates_are_422_naming_the_problem(api, template, field, fragment):
    response = api.post("/workflows", template)
    assert response.status_code == 422, response.text
    problems = response.json()["errors"]
    assert any(p["field"] == field and fragment in p["message"] for p in problems), problems
    assert api.get("/workflows/c").status_code == 404


def test_every_problem_of_a_template_is_listed(api):
    response = api.post(
        "/workflows",
        {
            "name": "many",
            "steps": [
                {"id": "a", "type": "teleport"},
                {"id": "b", "type": "fail", "depends_on": ["zzz"]},
                {"id": "c", "type": "script", "config": {}},
            ],
        },
    )
    fields = [p["field"] for p in response.json()["errors"]]
    assert fields == ["steps.0.type", "steps.1.depends_on", "steps.2.config.command"]


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({"count": "three"}, "inputs.count", "must be a number"),
        ({}, "inputs.count", "is required"),
        ({"count": 3, "extra": 1}, "inputs.extra", "not an input of this workflow"),
        ({"count": True}, "inputs.count", "must be a number"),
    ],
)
def test_run_inputs_of_the_wrong_type_are_422(api, inputs, field, message):
    save(
        api,
        {
            "name": "typed",
            "inputs": [{"name": "count", "type": "number", "required": True}],
            "steps": [{"id": "a", "type": "wait", "config": {"duration": "0s"}}],
        },
    )
    response = api.post("/workflow-runs", {"workflow": "typed", "inputs": inputs})
    assert response.status_code == 422
    assert {"field": field, "message": message} in response.json()["errors"]
    assert api.get("/workflow-runs").json()["items"] == []


def test_unknown_workflow_and_run_are_404(api, other_tenant):
    assert api.post("/workflow-runs", {"workflow": "ghost"}).status_code == 404
    assert api.get("/workflow-runs/not-a-uuid").status_code == 404
    save(api, {"name": "mine", "steps": [{"id": "a", "type": "approval"}]})
    run_id = start(api, "mine")
    assert other_tenant.get(f"/workflow-runs/{run_id}").status_code == 404
    assert other_tenant.post(f"/workflow-runs/{run_id}/cancel").status_code == 404
    assert other_tenant.get("/workflows/mine").status_code == 404


def test_only_admins_save_templates_and_viewers_cannot_start_runs(api):
    releaser = api.user_token("releaser")
    template = {
        "name": "guarded",
        "steps": [{"id": "a", "type": "script", "config": {"command": "id"}}],
    }
    assert api.post("/workflows", template, token=releaser).status_code == 403
    save(api, template)
    assert (
        api.post(
            "/workflow-runs", {"workflow": "guarded"}, token=api.user_token("viewer")
        ).status_code
        == 403
    )
    assert api.post("/workflow-runs", {"workflow": "guarded"}, token=releaser).status_code == 201


def test_repeated_failures_of_a_step_type_open_its_circuit(api, container, tmp_path):
    from tests.conftest import free_port

    closed = f"http://127.0.0.1:{free_port()}/"
    save(
        api,
        {
            "name": "down",
            "on_failure": "stop",
            "steps": [{"id": "call", "type": "http", "config": {"url": closed}}],
        },
    )
    serial = start_worker(container, tmp_path / "work", "breaker", concurrency=1)
    try:
        errors = []
        for _ in range(6):
            run = wait_for_run(api, start(api, "down"))
            errors.append(step(run, "call")["error"])
    finally:
        serial.stop()
    assert all("ConnectError" in e for e in errors[:5]), errors
    assert errors[5].startswith("circuit open for step type 'http' after 5 consecutive failures")


def test_script_env_secret_references_are_resolved_late_and_masked(api, worker, monkeypatch):
    monkeypatch.setenv("STELLA_SECRET_TEST_DEPLOY_TOKEN", "s3cr3t-value")
    save(
        api,
        {
            "name": "secretive",
            "on_failure": "stop",
            "steps": [
                {
                    "id": "use",
                    "type": "script",
                    "config": {
                        "command": "echo token=$TOKEN; echo seen=$TOKEN >> $STELLA_OUTPUT",
                        "env": {"TOKEN": "env:STELLA_SECRET_TEST_DEPLOY_TOKEN", "PLAIN": "visible"},
                    },
                }
            ],
        },
    )
    template = api.get("/workflows/secretive").json()
    assert template["steps"][0]["config"]["env"]["TOKEN"] == "env:STELLA_SECRET_TEST_DEPLOY_TOKEN"
    run = wait_for_run(api, start(api, "secretive"))
    assert run["state"] == "succeeded"
    detail = api.get(f"/workflow-runs/{run['id']}/steps/use").json()
    assert "s3cr3t-value" not in detail["log"]
    assert "token=***" in detail["log"]
    assert detail["outputs"] == {"seen": "***"}


def test_unresolvable_secret_reference_fails_the_step_without_retry(api, worker):
    save(
        api,
        {
            "name": "nosecret",
            "on_failure": "stop",
            "steps": [
                {
                    "id": "use",
                    "type": "script",
                    "retry": {"max_attempts": 3, "backoff": "10ms"},
                    "config": {
                        "command": "true",
                        "env": {"TOKEN": "env:STELLA_SECRET_TEST_NOT_SET"},
                    },
                }
            ],
        },
    )
    run = wait_for_run(api, start(api, "nosecret"))
    assert run["state"] == "failed"
    assert step(run, "use")["attempts"] == 1
    assert "env:STELLA_SECRET_TEST_NOT_SET is not set" in step(run, "use")["error"]


def test_expressions_over_odd_values_never_jam_the_engine(api, worker):
    """Regression (review): contains(object, list) raised inside the claim and starved every run."""
    save(
        api,
        {
            "name": "odd",
            "on_failure": "stop",
            "inputs": [{"name": "o", "type": "object"}, {"name": "l", "type": "array"}],
            "steps": [
                {
                    "id": "a",
                    "type": "script",
                    "config": {"command": "echo ${{ contains(inputs.o, inputs.l) }}"},
                },
                {
                    "id": "b",
                    "type": "wait",
                    "depends_on": ["a"],
                    "config": {"duration": "0s"},
                    "when": "contains(inputs.o, inputs.l)",
                },
            ],
        },
    )
    odd = start(api, "odd", o={"k": 1}, l=[1, 2])
    save(
        api,
        {"name": "healthy", "steps": [{"id": "a", "type": "wait", "config": {"duration": "0s"}}]},
    )
    healthy = start(api, "healthy")
    assert wait_for_run(api, healthy)["state"] == "succeeded"
    run = wait_for_run(api, odd)
    assert run["state"] == "succeeded"
    assert (step(run, "a")["state"], step(run, "b")["state"]) == ("succeeded", "skipped")
