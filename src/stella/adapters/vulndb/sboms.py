"""SBOM components: CycloneDX and SPDX (2.x JSON, 3.0 JSON-LD) normalised to `Component`s.

Advisory matching looks packages up by OSV ecosystem and name, so every component with a
package URL gets the ecosystem and the name OSV uses for it (`group:artifact` for Maven, the
module path for Go, `@scope/name` for npm). A component without a purl keeps the SBOM's name
and version and no ecosystem: it is listed, but no advisory can match it by accident.

This module also holds the small readers the scan-report and VEX parsers share (a rejection
in the wording of `attachment_formats`, typed optional fields, the CycloneDX component walk),
so that every parser reports a wrong document the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NoReturn

from packageurl import PackageURL

from stella.domain.attachment_formats import FORMATS, DocumentRejected, UnknownFormat, parse_json
from stella.domain.security import Component

SBOM_FORMATS = ("cyclonedx", "spdx")

# purl types whose OSV ecosystem does not depend on the namespace (a Linux distribution)
ECOSYSTEMS_BY_TYPE: dict[str, str] = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "cargo": "crates.io",
    "gem": "RubyGems",
    "nuget": "NuGet",
    "composer": "Packagist",
    "hex": "Hex",
    "pub": "Pub",
}
# rpm: the purl namespace names the distribution; unknown vendors get no ecosystem, since
# matching their packages against another distribution's advisories would be wrong
RPM_ECOSYSTEMS: dict[str, str] = {
    "redhat": "Red Hat",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "opensuse": "openSUSE",
    "suse": "SUSE",
}
# Debian release code names some tools write in the distro qualifier instead of the number
DEBIAN_CODENAMES: dict[str, str] = {
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
}
# ecosystems whose package name is `namespace/name` in OSV
_SLASHED = frozenset({"npm", "Go", "Packagist"})
_ALPINE_RELEASE = re.compile(r"^(?:alpine-)?v?(\d+)\.(\d+)")
_DEBIAN_RELEASE = re.compile(r"^(?:debian-)?(\d+)")
_NO_VALUE = frozenset({"NOASSERTION", "NONE"})  # SPDX's words for an unknown value


# --- shared readers --------------------------------------------------------------------------


def load(document: Any) -> Any:
    """Accept the raw attachment body too, parsed (and rejected) exactly like an upload."""
    if isinstance(document, bytes | bytearray):
        return parse_json(bytes(document))
    return document


def unknown_format(kind: str, name: str, accepted: tuple[str, ...]) -> UnknownFormat:
    """`UnknownFormat` is a ValueError and a DocumentRejected, as `classify` raises it."""
    return UnknownFormat(f"unknown {kind} format '{name}'; accepted: {', '.join(accepted)}")


def reject(label: str, reason: str) -> NoReturn:
    """Raise `DocumentRejected('not <label>: <reason>')`, the wording of the upload checks."""
    msg = f"not {label}: {reason}"
    raise DocumentRejected(msg)


def check(format_name: str, document: Any) -> tuple[str, dict[str, Any]]:
    """Run the upload check of `format_name`; its label and the document, now known an object."""
    fmt = FORMATS[format_name]
    fmt.check(document)
    return fmt.label, document


def optional_str(label: str, parent: Any, key: str, path: str) -> str | None:
    """A string field that may be absent, null or empty (None); any other type is rejected."""
    if not isinstance(parent, dict):
        return None
    value = parent.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        reject(label, f"{path} must be a string")
    return value.strip() or None


def object_list(label: str, parent: Any, key: str, path: str) -> list[dict[str, Any]]:
    """A list of objects that may be absent or null (empty); anything else is rejected."""
    if not isinstance(parent, dict):
        return []
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        reject(label, f"{path} must be a list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            reject(label, f"{path}[{i}] must be an object")
    return value


class Fields:
    """Typed reads of one object of a document; rejections name the field as `<at>.<key>`."""

    __slots__ = ("at", "label", "obj")

    def __init__(self, label: str, obj: Any, at: str) -> None:
        self.label, self.obj, self.at = label, obj, at

    def text(self, key: str) -> str | None:
        """`optional_str` of `key`."""
        return optional_str(self.label, self.obj, key, f"{self.at}.{key}")

    def objects(self, key: str) -> list[dict[str, Any]]:
        """`object_list` of `key`."""
        return object_list(self.label, self.obj, key, f"{self.at}.{key}")


def string_list(value: Any) -> list[str]:
    """The non-empty strings of an optional list; enrichment such as aliases is best effort."""
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


# --- package URLs ----------------------------------------------------------------------------


def parse_purl(text: str | None) -> PackageURL | None:
    """The parsed purl, or None when the text is not a valid package URL."""
    if not text:
        return None
    try:
        return PackageURL.from_string(text.strip())
    except ValueError:
        return None


def _debian(purl: PackageURL) -> str | None:
    vendor = (purl.namespace or "debian").lower()
    if vendor == "ubuntu":
        return "Ubuntu"  # OSV spells releases 'Ubuntu:22.04:LTS'; not derivable from a purl
    if vendor != "debian":
        return None
    distro = str(purl.qualifiers.get("distro", "")).lower()
    distro = DEBIAN_CODENAMES.get(distro.removeprefix("debian-"), distro)
    release = _DEBIAN_RELEASE.match(distro)
    return f"Debian:{release.group(1)}" if release else "Debian"


def _alpine(purl: PackageURL) -> str | None:
    vendor = (purl.namespace or "alpine").lower()
    if vendor in ("wolfi", "chainguard"):
        return vendor.capitalize()
    if vendor != "alpine":
        return None
    distro = str(purl.qualifiers.get("distro", "")).lower()
    release = _ALPINE_RELEASE.match(distro)
    return f"Alpine:v{release.group(1)}.{release.group(2)}" if release else "Alpine"


def osv_ecosystem(purl: PackageURL) -> str | None:
    """OSV's ecosystem for a purl, with the distribution release when the purl names it.

    `pkg:deb/debian/…?distro=debian-12` is `Debian:12`, `pkg:apk/alpine/…?distro=alpine-3.19.1`
    (or Trivy's bare `3.19.1`) is `Alpine:v3.19`; rpm purls map by vendor namespace. Types OSV
    does not cover (oci, generic, github, …) give None.
    """
    kind = purl.type.lower()
    if kind == "deb":
        return _debian(purl)
    if kind == "apk":
        return _alpine(purl)
    if kind == "rpm":
        return RPM_ECOSYSTEMS.get((purl.namespace or "").lower())
    return ECOSYSTEMS_BY_TYPE.get(kind)


def osv_name(purl: PackageURL, ecosystem: str | None) -> str:
    """The package name as OSV spells it in `ecosystem`."""
    if ecosystem == "Maven" and purl.namespace:
        return f"{purl.namespace}:{purl.name}"
    if (ecosystem in _SLASHED or ecosystem is None) and purl.namespace:
        return f"{purl.namespace}/{purl.name}"
    return str(purl.name)


def purl_component(
    purl: str | None, name: str | None = None, version: str | None = None
) -> Component:
    """A component from a purl and the document's own name and version.

    The purl decides the name when it maps to an ecosystem (that is the name advisories use);
    the document's version wins over the purl's (Trivy moves the epoch to a qualifier). An
    invalid purl is dropped rather than guessed at: the component keeps its name, no ecosystem.
    """
    parsed = parse_purl(purl)
    if parsed is None:
        return Component(name=name or purl or "", version=version)
    ecosystem = osv_ecosystem(parsed)
    if ecosystem is not None or not name:
        name = osv_name(parsed, ecosystem)
    text = purl.strip() if purl else None
    return Component(name=name, version=version or parsed.version, purl=text, ecosystem=ecosystem)


# --- CycloneDX -------------------------------------------------------------------------------


def cyclonedx_walk(
    label: str, document: dict[str, Any], *, with_metadata: bool = False
) -> Iterator[tuple[str | None, Component]]:
    """(bom-ref, component) for every component, nested ones included, in document order.

    `with_metadata` adds `metadata.component` (the image or product the BOM describes) first:
    VEX and vulnerability `affects` refer to it, but it is not a package inside the image.
    """
    roots: list[tuple[dict[str, Any], str]] = []
    metadata = document.get("metadata")
    if with_metadata and isinstance(metadata, dict) and isinstance(metadata.get("component"), dict):
        roots.append((metadata["component"], "metadata.component"))
    roots.extend(
        (c, f"components[{i}]")
        for i, c in enumerate(object_list(label, document, "components", "components"))
    )
    stack = list(reversed(roots))
    while stack:
        component, at = stack.pop()
        name = optional_str(label, component, "name", f"{at}.name")
        if name is None:
            reject(label, f"{at}.name must be a non-empty string")
        version = optional_str(label, component, "version", f"{at}.version")
        purl = optional_str(label, component, "purl", f"{at}.purl")
        yield (
            optional_str(label, component, "bom-ref", f"{at}.bom-ref"),
            purl_component(purl, name, version),
        )
        children = object_list(label, component, "components", f"{at}.components")
        stack.extend((c, f"{at}.components[{i}]") for i, c in reversed(list(enumerate(children))))


def _cyclonedx(document: Any) -> list[Component]:
    label, doc = check("cyclonedx", document)
    return [component for _ref, component in cyclonedx_walk(label, doc)]


# --- SPDX ------------------------------------------------------------------------------------


def _spdx_value(label: str, parent: dict[str, Any], key: str, path: str) -> str | None:
    value = optional_str(label, parent, key, path)
    return None if value in _NO_VALUE else value


def _spdx2(label: str, doc: dict[str, Any]) -> list[Component]:
    components = []
    for i, package in enumerate(object_list(label, doc, "packages", "packages")):
        at = f"packages[{i}]"
        purl = None
        for j, ref in enumerate(object_list(label, package, "externalRefs", f"{at}.externalRefs")):
            kind = optional_str(
                label, ref, "referenceType", f"{at}.externalRefs[{j}].referenceType"
            )
            if kind is not None and kind.lower() == "purl":
                path = f"{at}.externalRefs[{j}].referenceLocator"
                purl = optional_str(label, ref, "referenceLocator", path)
                break
        name = package["name"]  # check_spdx made sure of it
        version = _spdx_value(label, package, "versionInfo", f"{at}.versionInfo")
        components.append(purl_component(purl, name, version))
    return components


def _spdx3_purl(label: str, element: dict[str, Any], at: str) -> str | None:
    purl = optional_str(label, element, "software_packageUrl", f"{at}.software_packageUrl")
    if purl is not None:
        return purl
    path = f"{at}.externalIdentifier"
    for j, ident in enumerate(object_list(label, element, "externalIdentifier", path)):
        if ident.get("externalIdentifierType") == "packageUrl":
            return optional_str(label, ident, "identifier", f"{path}[{j}].identifier")
    return None


def _spdx3(label: str, doc: dict[str, Any]) -> list[Component]:
    components = []
    for i, element in enumerate(doc["@graph"]):  # check_spdx made sure it is a list of objects
        if element.get("type", element.get("@type")) != "software_Package":
            continue
        at = f"@graph[{i}]"
        name = optional_str(label, element, "name", f"{at}.name")
        if name is None:
            reject(label, f"{at}.name must be a non-empty string")
        version = _spdx_value(
            label, element, "software_packageVersion", f"{at}.software_packageVersion"
        )
        components.append(purl_component(_spdx3_purl(label, element, at), name, version))
    return components


def _spdx(document: Any) -> list[Component]:
    label, doc = check("spdx", document)
    return _spdx2(label, doc) if "spdxVersion" in doc else _spdx3(label, doc)


_PARSERS = {"cyclonedx": _cyclonedx, "spdx": _spdx}


def sbom_components(format_name: str, document: Any) -> list[Component]:
    """The packages an SBOM lists, deduplicated, in document order.

    `document` is the parsed JSON (or the raw body). The upload check of the format runs first,
    so a wrong document is a `DocumentRejected` with the same reason an upload would give.
    """
    parser = _PARSERS.get(format_name)
    if parser is None:
        raise unknown_format("SBOM", format_name, SBOM_FORMATS)
    return list(dict.fromkeys(parser(load(document))))
