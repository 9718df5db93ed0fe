"""Pure deployment rules: drift findings, job transitions, policy defaults, rendering helpers."""

from __future__ import annotations

import pytest

from stella.domain.deployments import (
    LABEL_TARGET,
    ContainerSpec,
    DeploymentPolicy,
    JobState,
    ObservedContainer,
    check_job_transition,
    detect_drift,
)
from stella.domain.errors import Conflict
from stella.services.deployments import compose_project_name, interpolate

REPO = "127.0.0.1:5000/app/web"
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def _spec(name: str = "web", digest: str = A) -> ContainerSpec:
    return ContainerSpec(component="web", name=name, repository=REPO, digest=digest)


def _seen(name: str = "web", digest: str = A, state: str = "running", **labels: str):
    return ObservedContainer(name, f"{REPO}@{digest}", [f"{REPO}@{digest}"], state, labels)


def test_a_target_running_what_was_deployed_has_no_drift():
    assert detect_drift([_spec()], [_seen()], "t1") == []


@pytest.mark.parametrize(
    ("observed", "kind", "expected", "actual"),
    [
        ([], "missing", A, None),
        ([_seen(digest=B)], "changed_digest", A, B),
        ([_seen(state="exited")], "stopped", "running", "exited"),
    ],
)
def test_drift_names_what_differs(observed, kind, expected, actual):
    [finding] = detect_drift([_spec()], observed, "t1")
    assert (finding.kind, finding.expected, finding.actual) == (kind, expected, actual)


def test_a_container_of_another_repository_under_our_name_is_a_changed_digest():
    other = ObservedContainer(
        "web", "nginx:latest", ["docker.io/library/nginx@" + B], "running", {}
    )
    [finding] = detect_drift([_spec()], [other], "t1")
    assert (finding.kind, finding.actual) == ("changed_digest", "nginx:latest")


def test_extra_containers_count_only_when_labelled_for_this_target():
    mine = _seen("old-api", **{LABEL_TARGET: "t1"})
    theirs = _seen("sidecar", **{LABEL_TARGET: "t2"})
    unlabelled = _seen("someone-elses")
    findings = detect_drift([_spec()], [_seen(), mine, theirs, unlabelled], "t1")
    assert [(f.kind, f.container) for f in findings] == [("extra", "old-api")]


def test_job_states_move_forward_only():
    check_job_transition(JobState.QUEUED, JobState.PENDING)
    check_job_transition(JobState.RUNNING, JobState.PENDING)  # handed to another agent
    with pytest.raises(Conflict, match="succeeded; it cannot become running"):
        check_job_transition(JobState.SUCCEEDED, JobState.RUNNING)
    assert JobState.CANCELLED.is_terminal
    assert not JobState.QUEUED.is_terminal


def test_deployment_policy_round_trips_and_ignores_unknown_keys():
    policy = DeploymentPolicy(parallelism=3, auto_rollback=True)
    assert DeploymentPolicy.from_json(policy.to_json()) == policy
    assert DeploymentPolicy.from_json(None) == DeploymentPolicy()
    assert DeploymentPolicy.from_json({"parallelism": 2, "future": 1}).parallelism == 2


def test_interpolation_uses_plain_values_and_leaves_unknown_names():
    assert interpolate("127.0.0.1:${PORT}/${MISSING}", {"PORT": "18080"}) == (
        "127.0.0.1:18080/${MISSING}"
    )


@pytest.mark.parametrize(
    ("target", "project"),
    [("prod-1", "stella-prod-1"), ("Web.EU_1", "stella-web-eu_1"), ("...", "stella-target")],
)
def test_compose_project_names_are_what_compose_accepts(target, project):
    assert compose_project_name(target) == project
