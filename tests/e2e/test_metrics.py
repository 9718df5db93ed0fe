"""/metrics serves the specification's metric names, fed by promotions, gates and steps."""

from __future__ import annotations

from tests.support.prometheus import sample
from tests.support.promotions import build_estate
from tests.support.workflows import start_worker, wait_for_run


def test_metrics_count_promotions_gates_steps_and_requests(
    api, client, container, registry_url, repository, tmp_path
):
    before = client.get("/metrics").text
    estate = build_estate(api, registry_url, repository)
    api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    api.post(
        "/workflows",
        {"name": "m", "steps": [{"id": "a", "type": "wait", "config": {"duration": "0s"}}]},
    )
    worker = start_worker(container, tmp_path / "work")
    try:
        run_id = api.post("/workflow-runs", {"workflow": "m"}).json()["id"]
        wait_for_run(api, run_id)
    finally:
        worker.stop()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    for name in (
        "release_promotions_total",
        "release_deployments_duration_seconds",
        "release_gate_evaluations_total",
        "release_agents_online",
        "release_workflow_steps_duration_seconds",
        "http_requests_total",
    ):
        assert f"# TYPE {name}" in after
    delta = sample(
        after, "release_promotions_total", environment="dev", outcome="approved"
    ) - sample(before, "release_promotions_total", environment="dev", outcome="approved")
    assert delta == 1
    sealed = sample(after, "release_evidence_packets_total", kind="promotion_decision") - sample(
        before, "release_evidence_packets_total", kind="promotion_decision"
    )
    assert sealed == 1
    gates = sample(
        after, "release_gate_evaluations_total", gate="security", result="passed"
    ) - sample(before, "release_gate_evaluations_total", gate="security", result="passed")
    assert gates == 1
    steps = sample(
        after, "release_workflow_steps_duration_seconds_count", step_type="wait"
    ) - sample(before, "release_workflow_steps_duration_seconds_count", step_type="wait")
    assert steps >= 1  # the worker may also finish other tests' leftover runs
    assert (
        sample(
            after, "http_requests_total", method="POST", route="/api/v1/promotions", status="201"
        )
        >= 1
    )
