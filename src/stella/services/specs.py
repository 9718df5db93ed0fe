"""Input specifications shared by the API, the CLI and `stella apply`.

Unknown fields are rejected everywhere (`extra="forbid"`) so a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from stella.domain.environments import EnvironmentState, GateName
from stella.domain.errors import FieldError, ValidationFailed
from stella.domain.integrations import IntegrationType
from stella.domain.releases import ReleaseState
from stella.domain.targets import HealthStatus, TargetState, TargetType
from stella.domain.tenancy import Role

S = TypeVar("S", bound=BaseModel)

NAME = Field(min_length=1, max_length=128, pattern=r"^[^\s/][^/]*$")


class Spec(BaseModel):
    """Base: strict about unknown fields, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalPolicySpec(Spec):
    required_approvals: int = Field(default=0, ge=0, le=100)
    approver_roles: list[Role] = Field(default_factory=lambda: [Role.APPROVER, Role.ADMIN])
    separation_of_duties: StrictBool = False


class FreezeWindowSpec(Spec):
    name: str = Field(min_length=1, max_length=128)
    start: str
    end: str | None = None
    rrule: str | None = None
    duration: str | None = None
    timezone: str | None = None


class DeploymentPolicySpec(Spec):
    deploy_on_approval: StrictBool = Field(
        default=True,
        description="an approved promotion deploys to the targets (built-in deploy workflow)",
    )
    parallelism: int = Field(default=5, ge=1, le=100, description="targets deployed at once")
    max_failures: int = Field(default=0, ge=0, le=10_000, description="failed targets tolerated")
    auto_rollback: StrictBool = Field(
        default=False, description="redeploy the previous release when a deployment fails"
    )
    block_on_drift: StrictBool = Field(
        default=False, description="the health_check gate fails while a target has drifted"
    )
    task_timeout_seconds: float = Field(default=600.0, ge=1, le=86_400)
    sticker_path: str = Field(
        default="/var/lib/stella/sticker.json", min_length=2, max_length=512, pattern=r"^/"
    )


Severity = Literal["critical", "high", "medium", "low", "unknown"]


def _blocking_default() -> list[Severity]:
    return ["critical", "high"]


class SecurityPolicySpec(Spec):
    blocking_severities: list[Severity] = Field(
        default_factory=_blocking_default,
        description="severities whose findings block the security gate",
    )
    reachable_only: StrictBool = Field(
        default=True,
        description="findings a report marks unreachable (`reachable: false`) do not block",
    )
    max_scan_age_days: int | None = Field(
        default=None, ge=1, le=3650, description="older scans and SBOMs give an unknown verdict"
    )
    on_unknown: Literal["block", "pass"] = Field(
        default="block", description="what a digest without scan or SBOM means for the gate"
    )


class EnvironmentSpec(Spec):
    name: str = NAME
    slug: str = Field(min_length=1, max_length=63)
    promotion_order: int = Field(le=1_000_000)
    is_production: StrictBool = False
    description: str = Field(default="", max_length=2000)
    gates: list[GateName] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)
    approval_policy: ApprovalPolicySpec = Field(default_factory=ApprovalPolicySpec)
    freeze_windows: list[FreezeWindowSpec] = Field(default_factory=list)
    state: EnvironmentState = EnvironmentState.ACTIVE
    promotion_workflow: str | None = Field(
        default=None, max_length=128, description="workflow run when a promotion is approved"
    )
    deployment: DeploymentPolicySpec = Field(default_factory=DeploymentPolicySpec)
    security: SecurityPolicySpec = Field(default_factory=SecurityPolicySpec)


class EnvironmentPatch(Spec):
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^\s/][^/]*$")
    promotion_order: int | None = Field(default=None, le=1_000_000)
    is_production: StrictBool | None = None
    description: str | None = Field(default=None, max_length=2000)
    gates: list[GateName] | None = None
    policies: list[str] | None = None
    approval_policy: ApprovalPolicySpec | None = None
    freeze_windows: list[FreezeWindowSpec] | None = None
    state: EnvironmentState | None = None
    promotion_workflow: str | None = Field(default=None, max_length=128)
    deployment: DeploymentPolicySpec | None = None
    security: SecurityPolicySpec | None = None


class TargetSpec(Spec):
    name: str = NAME
    environment: str = Field(min_length=1, description="Environment id or slug")
    type: TargetType
    labels: dict[str, str] = Field(default_factory=dict)
    connection: dict[str, Any] = Field(default_factory=dict)
    agent_id: str | None = None
    state: TargetState = TargetState.ACTIVE


class TargetPatch(Spec):
    environment: str | None = None
    labels: dict[str, str] | None = None
    connection: dict[str, Any] | None = None
    agent_id: str | None = None
    state: TargetState | None = None
    health: HealthStatus | None = None


class ComponentSpec(Spec):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    repository: str = Field(min_length=1, max_length=255)
    runtime: dict[str, Any] = Field(default_factory=dict)


class ComponentPatch(Spec):
    repository: str | None = Field(default=None, min_length=1, max_length=255)
    runtime: dict[str, Any] | None = None


class IntegrationSpec(Spec):
    type: IntegrationType
    name: str = NAME
    url: str = Field(min_length=1, max_length=255)
    credentials_ref: str | None = None
    webhook_secret_ref: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class IntegrationPatch(Spec):
    url: str | None = Field(default=None, min_length=1, max_length=255)
    credentials_ref: str | None = None
    webhook_secret_ref: str | None = None
    config: dict[str, Any] | None = None


class ReleaseSpec(Spec):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: str = Field(min_length=1, max_length=128)
    source_ref: str | None = Field(default=None, max_length=255)
    components: dict[str, str] = Field(
        min_length=1,
        description="component name → `repo:tag`, `repo@sha256:…`, or just `tag` / `@sha256:…`",
    )
    state: ReleaseState = Field(default=ReleaseState.ACTIVE, description="draft or active")


class UserSpec(Spec):
    name: str = NAME
    role: Role


class ApplyDocument(Spec):
    """The declarative file of `stella apply -f`; each list is matched by slug or name."""

    api_version: str = Field(default="stella/v1", alias="apiVersion")
    environments: list[EnvironmentSpec] = Field(default_factory=list)
    integrations: list[IntegrationSpec] = Field(default_factory=list)
    components: list[ComponentSpec] = Field(default_factory=list)
    targets: list[TargetSpec] = Field(default_factory=list)


class RetrySpec(Spec):
    max_attempts: int = Field(default=1, ge=1, le=20)
    backoff: str = "1s"
    max_backoff: str = "1m"


class WorkflowStepSpec(Spec):
    id: str = Field(min_length=1, max_length=63)
    name: str | None = Field(default=None, max_length=200)
    type: str = Field(min_length=1, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    timeout: str | None = Field(default=None, description="e.g. 30s, 5m, PT1H; default 5m")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    rollback: StrictBool = False
    when: str | None = Field(default=None, max_length=1000)


class WorkflowInputSpec(Spec):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: str = "string"
    required: StrictBool = False
    default: Any = None
    description: str = Field(default="", max_length=500)


class WorkflowSpec(Spec):
    """A workflow template as users write it (JSON or YAML)."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = Field(default="", max_length=2000)
    inputs: list[WorkflowInputSpec] = Field(default_factory=list)
    on_failure: str = Field(default="rollback", pattern=r"^(rollback|stop)$")
    steps: list[WorkflowStepSpec] = Field(default_factory=list)


class RunSpec(Spec):
    workflow: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1, le=1_000_000)
    inputs: dict[str, Any] = Field(default_factory=dict)


class PromotionSpec(Spec):
    release_id: str = Field(min_length=1, description="release id or name@version")
    target_environment: str = Field(min_length=1)
    source_environment: str | None = None


class DecisionSpec(Spec):
    comment: str = Field(default="", max_length=2000)
    reason: str = Field(default="", max_length=2000)


class OverrideSpec(Spec):
    gate: str = Field(
        pattern=r"^freeze_window$", description="only freeze_window can be overridden"
    )
    reason: str = Field(min_length=10, max_length=2000)


class PolicySpec(Spec):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    rego: str = Field(min_length=1, max_length=256_000)


class FindingSpec(Spec):
    id: str = Field(min_length=1, max_length=200)
    severity: str = Field(pattern=r"^(critical|high|medium|low|negligible|unknown)$")
    reachable: StrictBool = True
    suppressed: StrictBool = False
    package: str | None = Field(default=None, max_length=300)


class ScanSpec(Spec):
    digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    format: Literal["native", "trivy", "grype", "sarif", "cyclonedx"] = "native"
    findings: list[FindingSpec] = Field(
        default_factory=list, description="native format: the findings themselves"
    )
    report: dict[str, Any] | None = Field(
        default=None,
        description="trivy, grype, sarif, cyclonedx (or native): the report as the tool wrote it",
    )


def patched(model: type[S], data: dict[str, Any]) -> S:
    """`model` of a resource's current spec with a PATCH merged in. A field the PATCH sets to
    null, or to a value only the whole spec refuses, is a 422 naming the field (not a 500)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in e["loc"]) or "body",
                "may not be null"
                if e.get("input", "") is None
                else str(e["msg"]).removeprefix("Value error, "),
            )
            for e in exc.errors()
        ]
        raise ValidationFailed.of(errors) from None
