"""The six promotion gates as pure functions of a recorded context.

Everything a gate looks at is gathered beforehand into the context (a plain JSON document that
is stored with each evaluation), so evaluating the same context again — a replay — gives the
same results byte for byte. Policies are evaluated from the Rego source recorded in the context.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from opentelemetry import trace

from stella.domain.canonical import digest
from stella.domain.environments import FreezeWindow
from stella.domain.promotions import GateResult
from stella.services.freeze import active_window

GATE_ORDER = (
    "previous_environment",
    "freeze_window",
    "security",
    "health_check",
    "policy",
    "approval",
)
PRODUCTION_DEFAULT_GATES = GATE_ORDER
NON_PRODUCTION_DEFAULT_GATES = ("previous_environment", "security")
EVALUATOR_VERSION = "stella-gates/1"

Context = dict[str, Any]


class PolicyEvaluator(Protocol):
    """Evaluates a Rego policy's `data.stella.promotion.deny` for an input document."""

    def deny(self, name: str, rego: str, policy_hash: str, document: dict[str, Any]) -> list[str]:
        """The deny messages; raises PolicyFailure when the policy errs or times out."""


class PolicyFailure(Exception):
    """A policy could not be evaluated (error, timeout); the gate fails closed with this reason."""


def _result(
    gate: str,
    passed: bool,
    reason: str,
    inputs: Any,
    details: dict[str, Any] | None = None,
    pending: bool = False,
) -> GateResult:
    return GateResult(gate, passed, reason, details or {}, digest(inputs), pending)


def previous_environment(ctx: Context) -> GateResult:
    inputs = {"source": ctx["source"], "previous": ctx["previous_promotions"]}
    if ctx["promotion"].get("kind") == "rollback":
        return _result(
            "previous_environment",
            True,
            "rollback to a release deployed to this environment before",
            inputs | {"kind": "rollback"},
        )
    if ctx["source"] is None:
        return _result(
            "previous_environment", True, "first environment: nothing to precede it", inputs
        )
    done = [p for p in ctx["previous_promotions"] if p["state"] in {"approved", "deployed"}]
    if done:
        return _result(
            "previous_environment",
            True,
            f"promoted to {ctx['source']['slug']} by promotion {done[0]['id']}",
            inputs,
        )
    return _result(
        "previous_environment",
        False,
        f"release was never promoted to {ctx['source']['slug']}",
        inputs,
    )


def freeze_window(ctx: Context) -> GateResult:
    target = ctx["target"]
    inputs = {
        "state": target["state"],
        "windows": target["freeze_windows"],
        "now": ctx["now"],
        "overrides": _overrides(ctx, "freeze_window"),
    }
    override = inputs["overrides"][-1] if inputs["overrides"] else None
    blocked: str | None
    if target["state"] == "frozen":
        blocked = f"environment {target['slug']} is frozen"
    else:
        windows = tuple(FreezeWindow(**w) for w in target["freeze_windows"])
        window = active_window(windows, datetime.fromisoformat(ctx["now"]))
        blocked = None if window is None else f"inside freeze window '{window.name}'"
    if blocked is None:
        return _result("freeze_window", True, "no freeze window is active", inputs)
    if override is not None:
        return _result(
            "freeze_window",
            True,
            f"{blocked}; overridden by {override['by']}: {override['reason']}",
            inputs,
            {"override": override},
        )
    return _result("freeze_window", False, blocked, inputs)


def security(ctx: Context) -> GateResult:
    """Each component's verdict under the environment's security policy (see
    `stella.domain.security.evaluate_verdict`): findings from scans and advisory matches, minus
    those VEX says are not affected or fixed, minus waived ones."""
    if "security" not in ctx:
        return _security_before_verdicts(ctx)
    from stella.services.security import verdict_from_context

    recorded = ctx["security"]
    now = datetime.fromisoformat(ctx["now"])
    policy_blocks_unknown = recorded["policy"]["on_unknown"] == "block"
    missing, blocking, verdicts = [], [], {}
    for component in ctx["release"]["components"]:
        verdict = verdict_from_context(recorded, component["digest"], now)
        verdicts[component["name"]] = verdict.to_json()
        if verdict.state == "unknown" and policy_blocks_unknown:
            missing.append(component["name"])
        elif verdict.state == "fail":
            blocking.append(f"{component['name']}: {verdict.reason}")
    details = {"verdicts": verdicts}
    if missing:
        reasons = "; ".join(verdicts[m]["reason"] for m in missing)
        return _result(
            "security",
            False,
            f"no scan verdict for {', '.join(missing)} ({reasons})",
            recorded,
            details | {"missing": missing},
        )
    if blocking:
        return _result("security", False, "; ".join(blocking), recorded, details)
    passed = "; ".join(f"{name}: {v['reason']}" for name, v in verdicts.items())
    return _result("security", True, passed or "no components", recorded, details)


def _security_before_verdicts(ctx: Context) -> GateResult:
    """The gate as it was before security decisioning: kept so that decisions recorded then
    replay identically."""
    inputs = {"verdicts": ctx["verdicts"]}
    missing, blocking = [], []
    for component in ctx["release"]["components"]:
        verdict = ctx["verdicts"].get(component["digest"])
        if verdict is None:
            missing.append(component["name"])
        elif verdict["blocking"]:
            blocking.append(f"{component['name']}: {', '.join(verdict['blocking'][:5])}")
    if missing:
        return _result(
            "security",
            False,
            f"no scan verdict for {', '.join(missing)}",
            inputs,
            {"missing": missing},
        )
    if blocking:
        return _result(
            "security",
            False,
            "reachable critical/high findings: " + "; ".join(blocking),
            inputs,
            {"blocking": blocking},
        )
    return _result("security", True, "no reachable critical or high findings", inputs)


def health_check(ctx: Context) -> GateResult:
    inputs = {"targets": ctx["targets"]}
    active = [t for t in ctx["targets"] if t["state"] == "active"]
    problems = (
        [f"{t['name']} is {t['health']}" for t in active if t["health"] != "healthy"]
        + [
            f"{t['name']} has no online agent ({t['agent']})"
            for t in active
            if t.get("agent") not in {None, "online", "degraded"}
        ]
        + [f"{t['name']} has drifted" for t in active if t.get("drift") == "drifted"]
    )
    if problems:
        return _result("health_check", False, f"targets not ready: {'; '.join(problems)}", inputs)
    count = len([t for t in ctx["targets"] if t["state"] == "active"])
    return _result("health_check", True, f"{count} target(s) healthy", inputs)


def approval(ctx: Context) -> GateResult:
    policy = ctx["target"]["approval_policy"]
    inputs = {
        "policy": policy,
        "approvals": ctx["approvals"],
        "requester": ctx["promotion"]["requested_by_name"],
        "is_production": ctx["target"]["is_production"],
    }
    rejected = [a for a in ctx["approvals"] if a["decision"] == "reject"]
    if rejected:
        first = rejected[0]
        reason = f"rejected by {first['user_name']}" + (
            f": {first['comment']}" if first["comment"] else ""
        )
        return _result("approval", False, reason, inputs, {"rejected_by": first["user_name"]})
    requester = ctx["promotion"]["requested_by_name"]
    counted = sorted(
        {
            a["user_name"]
            for a in ctx["approvals"]
            if a["decision"] == "approve"
            and a["role"] in policy["approver_roles"]
            and not (policy["separation_of_duties"] and a["user_name"] == requester)
        }
    )
    required = policy["required_approvals"]
    if ctx["target"]["is_production"] and required > 0 and counted == [requester]:
        counted = []  # the requester is never the sole approver of a production promotion
    details = {"approved_by": counted, "required": required}
    if len(counted) >= required:
        return _result(
            "approval", True, f"{len(counted)} of {required} approval(s)", inputs, details
        )
    return _result(
        "approval",
        False,
        f"{len(counted)} of {required} approval(s)",
        inputs,
        details,
        pending=True,
    )


def policy(ctx: Context, evaluator: PolicyEvaluator, so_far: list[GateResult]) -> GateResult:
    document = policy_input(ctx, so_far)
    inputs = {
        "policies": [{k: p[k] for k in ("name", "version", "hash")} for p in ctx["policies"]],
        "input": document,
    }
    if not ctx["policies"]:
        return _result("policy", True, "no policies attached", inputs)
    reasons: list[str] = []
    for attached in ctx["policies"]:
        if attached["rego"] is None:
            reasons.append(f"{attached['name']}: policy is not defined; failing closed")
            continue
        try:
            reasons += [
                f"{attached['name']}: {m}"
                for m in evaluator.deny(
                    attached["name"], attached["rego"], attached["hash"], document
                )
            ]
        except PolicyFailure as exc:
            reasons.append(f"{attached['name']}: policy failed ({exc}); failing closed")
    if reasons:
        return _result("policy", False, "; ".join(reasons), inputs, {"deny": reasons})
    return _result("policy", True, f"{len(ctx['policies'])} polic(ies) allow", inputs)


def policy_input(ctx: Context, so_far: list[GateResult]) -> dict[str, Any]:
    """The documented input of Rego policies (see docs/promotions.md)."""
    return {
        "promotion": ctx["promotion"],
        "release": ctx["release"],
        "source": ctx["source"],
        "target": {k: v for k, v in ctx["target"].items() if k != "freeze_windows"},
        "approvals": ctx["approvals"],
        "verdicts": ctx["verdicts"] if "verdicts" in ctx else _policy_verdicts(ctx),
        "now": ctx["now"],
        "gate_results": [r.to_json() for r in so_far],
    }


def _policy_verdicts(ctx: Context) -> dict[str, Any]:
    """`input.verdicts` for Rego: per digest its state, blocking advisory ids and finding count
    under the target environment's security policy."""
    from stella.services.security import verdict_from_context

    now = datetime.fromisoformat(ctx["now"])
    found = {}
    for component in ctx["release"]["components"]:
        verdict = verdict_from_context(ctx["security"], component["digest"], now)
        found[component["digest"]] = {
            "state": verdict.state,
            "blocking": sorted({b["advisory_id"] for b in verdict.blocking}),
            "findings": verdict.findings,
        }
    return found


def _overrides(ctx: Context, gate: str) -> list[dict[str, Any]]:
    return [o for o in ctx["overrides"] if o["gate"] == gate]


SIMPLE_GATES: dict[str, Callable[[Context], GateResult]] = {
    "previous_environment": previous_environment,
    "freeze_window": freeze_window,
    "security": security,
    "health_check": health_check,
    "approval": approval,
}


def evaluate(ctx: Context, evaluator: PolicyEvaluator) -> list[GateResult]:
    """Every gate of the target environment, in the fixed order of GATE_ORDER."""
    results: list[GateResult] = []
    tracer = trace.get_tracer("stella.gates")
    for gate in GATE_ORDER:
        if gate not in ctx["target"]["gates"]:
            continue
        with tracer.start_as_current_span("gate.evaluate", attributes={"gate.type": gate}) as span:
            if gate == "policy":
                result = policy(ctx, evaluator, results)
            else:
                result = SIMPLE_GATES[gate](ctx)
            span.set_attribute("gate.result", "passed" if result.passed else "failed")
        results.append(result)
    return results


def replay(ctx: Context, evaluator: PolicyEvaluator) -> tuple[list[dict[str, Any]], str, str]:
    """The gates run again on a recorded context: their results as recorded (JSON documents),
    and the (state, reason) those documents lead to. Used by the server and by offline
    verification alike, so both replay a decision the same way."""
    replayed = [r.to_json() for r in evaluate(ctx, evaluator)]
    state, reason = outcome(ctx, results_from(replayed))
    return replayed, state, reason


def results_from(documents: list[dict[str, Any]]) -> list[GateResult]:
    return [
        GateResult(
            d["gate"],
            d["passed"],
            d["reason"],
            d["details"],
            d["inputs_digest"],
            d.get("pending", False),
        )
        for d in documents
    ]


def outcome(ctx: Context, results: list[GateResult]) -> tuple[str, str]:
    """(state, reason) the results lead to: rejected, blocked, awaiting_approval or approved.

    A rejection by an approver rejects, whatever the gates say.
    """
    rejections = [a for a in ctx["approvals"] if a["decision"] == "reject"]
    if rejections:
        first = rejections[0]
        detail = f": {first['comment']}" if first["comment"] else ""
        return "rejected", f"rejected by {first['user_name']}{detail}"
    for result in results:
        if not result.passed and not result.pending and result.gate != "approval":
            return "blocked", f"{result.gate}: {result.reason}"
    for result in results:
        if result.gate == "approval" and not result.passed:
            return "awaiting_approval", f"approval: {result.reason}"
    return "approved", "every gate passed"
