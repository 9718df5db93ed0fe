"""The security services' parsers port, on the vulndb adapters (formats, purls, univers)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stella.adapters.vulndb.matching import AdvisoryIndex
from stella.adapters.vulndb.osv import read_osv
from stella.adapters.vulndb.reports import parse_scan_report
from stella.adapters.vulndb.sboms import sbom_components
from stella.adapters.vulndb.vex import vex_statements
from stella.domain.security import Advisory, Component, Finding, VexStatement


class VulnDbParsers:
    def scan_findings(self, format_name: str, document: Any) -> list[Finding]:
        return parse_scan_report(format_name, document)

    def sbom_components(self, format_name: str, document: Any) -> list[Component]:
        return sbom_components(format_name, document)

    def vex_statements(
        self, format_name: str, document: Any, source_digest: str | None
    ) -> list[VexStatement]:
        return vex_statements(format_name, document, source_digest)

    def read_advisories(self, source: Path) -> tuple[list[Advisory], list[tuple[str, str]]]:
        result = read_osv(source)
        return result.advisories, result.skipped


def advisory_index(advisories: Iterable[Advisory]) -> AdvisoryIndex:
    return AdvisoryIndex(advisories)
