"""The compose lockfile: a deterministic docker-compose.yml with every image pinned by digest.

Its SHA-256 is recorded as release evidence, so `render_compose_lockfile` is a pure function of its
inputs (sorted keys, sorted environment) and never contains a secret value.

Secrets. An environment value that is a secret reference (`env:NAME`, `file:/path`, …) is
written in compose's pass-through form — just `NAME` in the service's `environment` list — and
the reference itself goes into the service's `x-stella-secrets` extension field
(`{NAME: "env:NAME"}`), which compose ignores. At execution the compose executor reads those
references from the lockfile, resolves them just in time and hands the values to the compose
process through its environment only: no `.env` file, no value on disk, nothing in the lockfile
that changes between runs. The price of pass-through is one value per variable name per project,
so two services that take the same name from different references are rejected here, as are
names the compose process itself reads (PATH, HOME, DOCKER_*, COMPOSE_*).

Every literal string is escaped for compose interpolation (`$` → `$$`), so a value is passed on
exactly as written. Every service gets `network_mode` (`host` by default), so compose never
creates a project bridge network.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.health import healthcheck_test
from stella.adapters.executors.secret_env import is_secret_ref
from stella.domain.deployments import ContainerSpec, HealthProbe

SECRETS_KEY = "x-stella-secrets"
PROJECT_KEY = "x-stella-project"
_PINNED_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RESERVED_ENV_RE = re.compile(r"^(PATH|HOME|DOCKER_\w*|COMPOSE_\w*)$")


def render_compose_lockfile(project: str, containers: list[ContainerSpec]) -> str:
    """docker-compose.yml text for `containers`, services keyed by component; raise ValueError."""
    services: dict[str, dict[str, Any]] = {}
    references: dict[str, str] = {}
    for spec in containers:
        if spec.component in services:
            msg = f"component {spec.component} appears twice"
            raise ValueError(msg)
        if not _PINNED_RE.match(spec.image):
            msg = f"{spec.component}: image {spec.image!r} is not pinned by a sha256 digest"
            raise ValueError(msg)
        services[spec.component] = _service(spec, references)
    document = {PROJECT_KEY: project, "services": services}
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=1000)


def _service(spec: ContainerSpec, references: dict[str, str]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": spec.image,
        "container_name": spec.name,
        "network_mode": spec.network_mode or "host",
        "init": spec.init,
    }
    if spec.command:
        service["command"] = (
            _escape(spec.command)
            if isinstance(spec.command, str)
            else [_escape(a) for a in spec.command]
        )
    environment, secrets = _environment(spec, references)
    if environment:
        service["environment"] = environment
    if secrets:
        service[SECRETS_KEY] = secrets
    if spec.labels:
        service["labels"] = {k: _escape(v) for k, v in spec.labels.items()}
    if spec.health is not None and spec.health.test:
        service["healthcheck"] = _healthcheck(spec.health)
    if spec.restart:
        service["restart"] = spec.restart
    if spec.ports:
        service["ports"] = [_escape(p) for p in spec.ports]
    if spec.volumes:
        service["volumes"] = [_escape(v) for v in spec.volumes]
    return service


def _environment(
    spec: ContainerSpec, references: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    environment: list[str] = []
    secrets: dict[str, str] = {}
    for name, value in sorted(spec.environment.items()):
        if not _ENV_NAME_RE.match(name):
            msg = f"{spec.component}: {name!r} is not an environment variable name"
            raise ValueError(msg)
        if not is_secret_ref(value):
            environment.append(f"{name}={_escape(value)}")
            continue
        if _RESERVED_ENV_RE.match(name) or "$" in value:
            msg = f"{spec.component}: {name} cannot take a secret reference in a compose lockfile"
            raise ValueError(msg)
        if references.setdefault(name, value) != value:
            msg = (
                f"{spec.component}: {name} comes from {value} but another service takes {name} "
                f"from {references[name]}; compose passes one value per name"
            )
            raise ValueError(msg)
        environment.append(name)
        secrets[name] = value
    return environment, secrets


def _healthcheck(probe: HealthProbe) -> dict[str, Any]:
    interval = _duration(probe.interval_seconds)
    return {
        "test": [_escape(a) for a in healthcheck_test(probe)],
        "interval": interval,
        "timeout": _duration(max(probe.interval_seconds, 2.0)),
        "retries": max(probe.retries, 1),
    }


def _duration(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def _escape(text: str) -> str:
    return text.replace("$", "$$")


# -- reading a lockfile back (the compose executor) -----------------------------------------


def lockfile_services(text: str) -> dict[str, dict[str, Any]]:
    """The services of a lockfile, checked: digest-pinned images and an explicit network_mode."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        msg = "the compose lockfile is not valid YAML"
        raise DeploymentFailed(msg) from None
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict) or not services:
        msg = "the compose lockfile has no services"
        raise DeploymentFailed(msg)
    for name, service in services.items():
        if not isinstance(service, dict) or not _PINNED_RE.match(str(service.get("image", ""))):
            msg = f"service {name} of the compose lockfile is not pinned by a sha256 digest"
            raise DeploymentFailed(msg)
        if not service.get("network_mode"):
            msg = f"service {name} has no network_mode; compose would create a bridge network"
            raise DeploymentFailed(msg)
    return {str(k): v for k, v in services.items()}


def lockfile_references(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Variable name → secret reference over all services (`x-stella-secrets`)."""
    references: dict[str, str] = {}
    for name, service in sorted(services.items()):
        for variable, reference in dict(service.get(SECRETS_KEY) or {}).items():
            variable, reference = str(variable), str(reference)
            if not is_secret_ref(reference) or _RESERVED_ENV_RE.match(variable):
                msg = f"service {name}: {SECRETS_KEY}.{variable} is not a usable secret reference"
                raise DeploymentFailed(msg)
            if references.setdefault(variable, reference) != reference:
                msg = f"service {name}: {variable} is taken from two different references"
                raise DeploymentFailed(msg)
    return references
