"""The verdict rules: severities, reachability, evidence age, VEX precedence, waivers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stella.domain.security import (
    VEX_RULES,
    Finding,
    SecurityPolicy,
    VexStatement,
    Waiver,
    applicable_vex,
    evaluate_verdict,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
OPENSSL = Finding(
    "CVE-2024-0727",
    "openssl",
    "critical",
    aliases=("GHSA-xxxx",),
    purl="pkg:deb/debian/openssl@3.0.11-1?distro=debian-12",
    installed_version="3.0.11-1",
    fixed_version="3.0.13-1",
)
ZLIB = Finding("CVE-2023-45853", "zlib", "medium", purl="pkg:deb/debian/zlib@1.2.13")


def verdict(findings, statements=(), waivers=(), policy=None, evidence_at=NOW, env="prod"):
    return evaluate_verdict(
        DIGEST,
        list(findings),
        list(statements),
        list(waivers),
        policy or SecurityPolicy(),
        env,
        NOW,
        evidence_at,
    )


def statement(status, products=(DIGEST,), subcomponents=(), at=None, vulnerability="CVE-2024-0727"):
    return VexStatement(
        vulnerability, status, products=tuple(products), subcomponents=tuple(subcomponents),
        timestamp=at, justification="component_not_present" if status == "not_affected" else None,
    )  # fmt: skip


def test_no_evidence_is_unknown_and_old_evidence_too():
    assert verdict([OPENSSL], evidence_at=None).state == "unknown"
    old = verdict(
        [], policy=SecurityPolicy(max_scan_age_days=30), evidence_at=NOW - timedelta(days=45)
    )
    assert old.state == "unknown"
    assert "45 days old" in old.reason
    fresh = verdict(
        [], policy=SecurityPolicy(max_scan_age_days=30), evidence_at=NOW - timedelta(days=2)
    )
    assert fresh.state == "pass"


def test_blocking_severities_and_reachability():
    failed = verdict([OPENSSL, ZLIB])
    assert failed.state == "fail"
    assert [b["advisory_id"] for b in failed.blocking] == ["CVE-2024-0727"]
    assert failed.reason.startswith("1 critical (CVE-2024-0727)")
    stricter = verdict(
        [ZLIB], policy=SecurityPolicy(blocking_severities=("critical", "high", "medium"))
    )
    assert stricter.state == "fail"
    unreachable = Finding("CVE-1", "x", "critical", reachable=False)
    assert verdict([unreachable]).state == "pass"
    everything = SecurityPolicy(reachable_only=False)
    assert verdict([unreachable], policy=everything).state == "fail"
    unknown_reachability = Finding("CVE-2", "y", "high", reachable=None)
    assert verdict([unknown_reachability]).state == "fail"


def test_the_same_hit_from_a_scan_and_an_advisory_counts_once():
    matched = Finding(**{**OPENSSL.to_json(), "aliases": OPENSSL.aliases, "source": "advisory"})
    assert len(verdict([OPENSSL, matched]).blocking) == 1


def test_not_affected_and_fixed_suppress_affected_does_not():
    for status in ("not_affected", "fixed"):
        result = verdict([OPENSSL], [statement(status)])
        assert result.state == "pass", status
        assert result.suppressed[0]["vex"]["status"] == status
    assert verdict([OPENSSL], [statement("affected")]).state == "fail"
    assert verdict([OPENSSL], [statement("under_investigation")]).state == "fail"


def test_vex_matches_by_alias_product_and_subcomponent():
    by_alias = statement("not_affected", vulnerability="GHSA-xxxx")
    assert verdict([OPENSSL], [by_alias]).state == "pass"
    other_image = statement("not_affected", products=("sha256:" + "b" * 64,))
    assert verdict([OPENSSL], [other_image]).state == "fail"
    other_package = statement("not_affected", subcomponents=("pkg:deb/debian/libssl3",))
    assert verdict([OPENSSL], [other_package]).state == "fail"
    unversioned = statement("not_affected", subcomponents=("pkg:deb/debian/openssl",))
    assert verdict([OPENSSL], [unversioned]).state == "pass"
    other_version = statement("not_affected", subcomponents=("pkg:deb/debian/openssl@3.0.9-1",))
    assert verdict([OPENSSL], [other_version]).state == "fail"
    anywhere = statement("not_affected", products=())
    assert verdict([OPENSSL], [anywhere]).state == "pass"


def test_a_versioned_package_product_names_that_version_only():
    """`not_affected` for openssl 3.0.13-1 says nothing about the 3.0.11-1 this image runs."""
    other = statement("not_affected", products=("pkg:deb/debian/openssl@3.0.13-1",))
    assert verdict([OPENSSL], [other]).state == "fail"
    same = statement("not_affected", products=("pkg:deb/debian/openssl@3.0.11-1",))
    assert verdict([OPENSSL], [same]).state == "pass"
    unversioned = statement("not_affected", products=("pkg:deb/debian/openssl",))
    assert verdict([OPENSSL], [unversioned]).state == "pass"


def test_decisions_recorded_under_the_first_rules_replay_under_them():
    """Rules 1 (contexts recorded before the rules were versioned) let a versioned package
    product name every version: an old decision replays to the verdict it had."""
    other = statement("not_affected", products=("pkg:deb/debian/openssl@3.0.13-1",))
    old = evaluate_verdict(
        DIGEST, [OPENSSL], [other], [], SecurityPolicy(), "prod", NOW, NOW, vex_rules=1
    )
    assert old.state == "pass"
    assert VEX_RULES == 2


def test_conflicting_statements_most_specific_then_newest_wins():
    general_new = statement("affected", products=(), at=NOW)
    specific_old = statement(
        "not_affected", subcomponents=("pkg:deb/debian/openssl",), at=NOW - timedelta(days=30)
    )
    # more specific wins although it is older
    chosen = applicable_vex([general_new, specific_old], DIGEST, OPENSSL)
    assert chosen is specific_old
    # equally specific: the newest wins, in either order
    older = statement("not_affected", at=NOW - timedelta(days=1))
    newer = statement("affected", at=NOW)
    assert applicable_vex([older, newer], DIGEST, OPENSSL) is newer
    assert applicable_vex([newer, older], DIGEST, OPENSSL) is newer
    undated = statement("not_affected")
    assert applicable_vex([undated, older], DIGEST, OPENSSL) is older
    # equal in everything: the one recorded last wins
    again = statement("fixed", at=NOW)
    assert applicable_vex([newer, again], DIGEST, OPENSSL) is again


def test_waivers_cover_one_advisory_on_one_package_until_they_expire():
    waiver = Waiver("w1", "CVE-2024-0727", "openssl", "accepted", NOW + timedelta(days=1), "eve")
    waived = verdict([OPENSSL], waivers=[waiver])
    assert waived.state == "pass"
    assert waived.waived[0]["waiver"]["id"] == "w1"
    expired = Waiver("w2", "CVE-2024-0727", "openssl", "old", NOW - timedelta(seconds=1), "eve")
    assert verdict([OPENSSL], waivers=[expired]).state == "fail"
    by_purl = Waiver(
        "w3", "GHSA-xxxx", "pkg:deb/debian/openssl", "ok", NOW + timedelta(days=1), "eve"
    )
    assert verdict([OPENSSL], waivers=[by_purl]).state == "pass"
    elsewhere = Waiver(
        "w4", "CVE-2024-0727", "openssl", "dev only", NOW + timedelta(days=1), "eve", "dev"
    )
    assert verdict([OPENSSL], waivers=[elsewhere]).state == "fail"
    assert verdict([OPENSSL], waivers=[elsewhere], env="dev").state == "pass"
    other_package = Waiver("w5", "CVE-2024-0727", "libssl3", "no", NOW + timedelta(days=1), "eve")
    assert verdict([OPENSSL], waivers=[other_package]).state == "fail"


def test_a_scan_and_an_advisory_naming_the_same_hit_through_aliases_count_once():
    matched = Finding(
        "DEBIAN-CVE-2024-0727",
        "openssl",
        "critical",
        aliases=("CVE-2024-0727",),
        purl="pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12",
        source="advisory",
    )
    result = verdict([matched, OPENSSL])
    assert [b["advisory_id"] for b in result.blocking] == ["CVE-2024-0727"]
    other_package = Finding("CVE-2024-0727", "libssl3", "critical", source="advisory")
    assert len(verdict([OPENSSL, other_package]).blocking) == 2


def test_a_recorded_context_says_which_rules_it_replays_under():
    from stella.services.security import verdict_from_context

    other = statement("not_affected", products=("pkg:deb/debian/openssl@3.0.13-1",))
    context = {
        "environment": "prod",
        "policy": SecurityPolicy().to_json(),
        "waivers": [],
        "digests": {
            DIGEST: {
                "evidence_at": NOW.isoformat(),
                "findings": [OPENSSL.to_json()],
                "vex": [other.to_json()],
            }
        },
    }
    assert verdict_from_context(context, DIGEST, NOW).state == "pass"  # recorded before: rules 1
    assert verdict_from_context(context | {"vex_rules": 2}, DIGEST, NOW).state == "fail"
