"""Security documents → the domain's security types.

Pure parsers, no I/O: a scan report becomes `Finding`s, an SBOM `Component`s, a VEX document
`VexStatement`s. They run the same structural checks as attachment uploads
(`stella.domain.attachment_formats`) first, so a document is rejected for the same reason
whether it is uploaded or re-read, and then read only what the security verdict uses.
"""

from stella.adapters.vulndb.reports import SCAN_FORMATS, parse_scan_report
from stella.adapters.vulndb.sboms import SBOM_FORMATS, sbom_components
from stella.adapters.vulndb.vex import VEX_FORMATS, vex_statements

__all__ = [
    "SBOM_FORMATS",
    "SCAN_FORMATS",
    "VEX_FORMATS",
    "parse_scan_report",
    "sbom_components",
    "vex_statements",
]
