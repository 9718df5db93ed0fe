"""An estate for promotion tests: dev → stage → prod, a pushed image, a release, a clean scan."""

from __future__ import annotations

from dataclasses import dataclass

from tests.conftest import REGISTRY
from tests.support.oci import push_image

PROD_RULES = """package stella.promotion
import rego.v1

deny contains msg if {
    input.target.is_production
    contains(input.release.version, "-")
    msg := sprintf("pre-release %s may not go to production", [input.release.version])
}

deny contains msg if {
    input.target.is_production
    some c in input.release.components
    not startswith(c.repository, "127.0.0.1:")
    msg := sprintf("%s is not from the trusted registry", [c.repository])
}
"""


YEAR_END = {"name": "year-end", "start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z"}
ALWAYS_FROZEN = {
    "name": "always",
    "rrule": "FREQ=DAILY",
    "start": "2026-01-01T00:00:00",
    "duration": "24h",
    "timezone": "UTC",
}


def pipeline(prod_windows: list[dict]) -> list[dict]:
    """dev (no approvals) → stage (1 approval) → prod (2 approvals, SoD, prod-rules policy)."""
    return [
        {"name": "Dev", "slug": "dev", "promotion_order": 1},
        {
            "name": "Stage",
            "slug": "stage",
            "promotion_order": 2,
            "gates": ["previous_environment", "security", "approval"],
            "approval_policy": {"required_approvals": 1},
        },
        {
            "name": "Prod",
            "slug": "prod",
            "promotion_order": 3,
            "is_production": True,
            "policies": ["prod-rules"],
            "approval_policy": {"required_approvals": 2, "separation_of_duties": True},
            "freeze_windows": prod_windows,
            # these scenarios exercise gates and decisions; deployments have their own tests
            "deployment": {"deploy_on_approval": False},
        },
    ]


@dataclass
class Estate:
    release_id: str
    digest: str
    approvers: list[str]


def build_estate(
    api,
    registry_url: str,
    repository: str,
    version: str = "1.0.0",
    prod_windows: list | None = None,
) -> Estate:
    digest = push_image(registry_url, repository, "v1", f"promotion {repository}")
    assert (
        api.post(
            "/components", {"name": "api", "repository": f"{REGISTRY}/{repository}"}
        ).status_code
        == 201
    )
    assert api.post("/policies", {"name": "prod-rules", "rego": PROD_RULES}).status_code in (
        200,
        201,
    )
    environments = pipeline(prod_windows or [YEAR_END])
    for env in environments:
        assert api.post("/environments", env).status_code == 201
    assert (
        api.post(
            "/targets", {"name": "prod-1", "environment": "prod", "type": "ssh_remote"}
        ).status_code
        == 201
    )
    assert api.patch("/targets/prod-1", {"health": "healthy"}).status_code == 200
    release = api.post(
        "/releases", {"name": "api", "version": version, "components": {"api": "v1"}}
    )
    assert release.status_code == 201, release.text
    assert (
        api.post(
            "/scans",
            {
                "digest": digest,
                "findings": [
                    {"id": "CVE-2026-0001", "severity": "high", "reachable": False},
                    {"id": "CVE-2026-0002", "severity": "low"},
                ],
            },
        ).status_code
        == 201
    )
    approvers = [api.user_token("approver") for _ in range(3)]
    return Estate(release.json()["id"], digest, approvers)


def gate(promotion: dict, name: str) -> dict:
    return next(g for g in promotion["gate_results"] if g["gate"] == name)
