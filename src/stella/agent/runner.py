"""The deployment agent: enrols once, then heartbeats, long-polls for tasks and runs them.

It only ever connects outbound: to the API once (enrolment with a join token and a CSR), then
to the agent listener over mutual TLS with the certificate it received. Its key never leaves
the data folder. Results are retried until the control plane takes them (it may be restarting)
or says the task is no longer this agent's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from opentelemetry import propagate, trace

import stella
from stella.adapters.executors import executor_for
from stella.adapters.pki import generate_agent_key_and_csr
from stella.adapters.secrets import resolve_secret
from stella.domain.deployments import DeploymentOutcome
from stella.services.deployments import task_from_json

log = logging.getLogger("stella.agent")

STATE_FILE = "agent.json"
KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.crt"
RESULT_RETRY_SECONDS = 600.0


class _Interrupted(BaseException):
    """Raised by the SIGTERM handler to end an idle long poll at once."""


class AgentError(Exception):
    """Stops the agent with one readable line (bad token, revoked, unreachable server…)."""


@dataclass(frozen=True)
class AgentOptions:
    data_dir: Path
    server: str | None  # the API URL, needed only to enrol
    join_token: str | None
    name: str | None
    docker_host: str | None
    work_dir: Path
    sticker_root: Path | None = None
    labels: dict[str, str] | None = None
    heartbeat_seconds: float | None = None  # default: what the server says
    poll_wait_seconds: float = 20.0


@dataclass(frozen=True)
class Identity:
    agent_id: str
    name: str
    agent_url: str
    heartbeat_seconds: float


def enrol_if_needed(options: AgentOptions) -> Identity:
    """Reuse the identity in the data folder, or enrol with the join token."""
    state = options.data_dir / STATE_FILE
    if state.exists():
        data = json.loads(state.read_text())
        return Identity(**data)
    if not (options.server and options.join_token and options.name):
        msg = (
            f"{options.data_dir} holds no agent identity; enrol with "
            "--server URL --join-token TOKEN --name NAME"
        )
        raise AgentError(msg)
    options.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem, csr_pem = generate_agent_key_and_csr(options.name)
    try:
        response = httpx.post(
            f"{options.server.rstrip('/')}/api/v1/agents/enroll",
            json={
                "join_token": options.join_token,
                "name": options.name,
                "csr": csr_pem,
                "version": stella.__version__,
                "labels": options.labels or {},
            },
            timeout=30,
        )
    except httpx.HTTPError as exc:
        msg = f"cannot reach {options.server} to enrol: {type(exc).__name__}"
        raise AgentError(msg) from None
    if response.status_code != 201:
        msg_0 = f"enrolment refused: {_detail(response)}"
        raise AgentError(msg_0)
    body = response.json()
    _write_private(options.data_dir / KEY_FILE, key_pem)
    (options.data_dir / CERT_FILE).write_text(body["certificate"])
    (options.data_dir / CA_FILE).write_text(body["ca_certificate"])
    identity = Identity(
        agent_id=body["agent_id"],
        name=body["name"],
        agent_url=body["agent_url"],
        heartbeat_seconds=float(body["heartbeat_seconds"]),
    )
    state.write_text(json.dumps(identity.__dict__, indent=2))
    return identity


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return f"HTTP {response.status_code}"


def certificate_window(data_dir: Path) -> tuple[datetime, datetime]:
    """(not before, not after) of the agent's current certificate."""
    cert = x509.load_pem_x509_certificate((data_dir / CERT_FILE).read_bytes())
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def finish_interrupted_renewal(data_dir: Path) -> None:
    """A renewal writes `*.new` files, then renames key and certificate; complete it if a crash
    came in between, so key and certificate always match."""
    for name in (KEY_FILE, CERT_FILE):
        pending = data_dir / f"{name}.new"
        if pending.exists():
            pending.replace(data_dir / name)


# How long an idle connection to the listener is kept for the next request. httpx's default
# (5 s) closed it between two heartbeats (30 s), so every heartbeat paid a TLS handshake with
# a client certificate on both sides. The listener keeps idle connections for 75 s
# (api/mtls.py); the agent lets them go a little earlier, so that it never sends a request on
# a connection the listener is closing.
KEEPALIVE_SECONDS = 60.0


def mtls_client(data_dir: Path, base_url: str) -> httpx.Client:
    """One client per certificate: its pool keeps a connection for heartbeats and one for the
    long poll, each re-used across requests (one TLS handshake each, not one per request)."""
    context = ssl.create_default_context(cafile=str(data_dir / CA_FILE))
    context.load_cert_chain(str(data_dir / CERT_FILE), str(data_dir / KEY_FILE))
    limits = httpx.Limits(max_connections=4, keepalive_expiry=KEEPALIVE_SECONDS)
    return httpx.Client(base_url=base_url, verify=context, timeout=60, limits=limits)


class Agent:
    """Heartbeat thread + task loop; `stop()` ends both after the current task."""

    def __init__(self, options: AgentOptions, identity: Identity) -> None:
        self.options = options
        self.identity = identity
        self.interval = options.heartbeat_seconds or identity.heartbeat_seconds
        finish_interrupted_renewal(options.data_dir)
        not_after = certificate_window(options.data_dir)[1]
        if not_after <= datetime.now(UTC):
            msg = (
                f"this agent's certificate expired on {not_after:%Y-%m-%d %H:%M} UTC; "
                f"delete {options.data_dir} and enrol again with a new join token"
            )
            raise AgentError(msg)
        self.client = mtls_client(options.data_dir, identity.agent_url)
        self.stopping = threading.Event()
        self.cancelled = threading.Event()
        self.fatal: str | None = None
        self.busy_with: str | None = None

    def executor(self, target_type: str, connection: dict[str, Any] | None = None) -> Any:
        extra: dict[str, Any] = {"sticker_root": self.options.sticker_root}
        if target_type == "compose_host":
            extra["work_dir"] = self.options.work_dir
        if target_type == "ssh_remote":  # an agent with the ssh capability reaches hosts itself
            extra |= {
                "connection": connection or {},
                "resolve_secret": resolve_secret,
                "work_dir": self.options.work_dir / "ssh-compose",
            }
        return executor_for(target_type, self.options.docker_host, **extra)

    # --- heartbeats --------------------------------------------------------------------------

    def heartbeat_once(self) -> None:
        health: dict[str, Any] = {"status": "healthy"}
        inventory = None
        try:
            inventory = [c.to_json() for c in self.executor("docker_host").inventory()]
        except Exception as exc:  # noqa: BLE001 - an unreachable engine is reported, not fatal
            health = {"status": "unhealthy", "reason": f"docker engine: {type(exc).__name__}"}
        if self.busy_with:
            health["task"] = self.busy_with
        response = self._post(
            "/agent/v1/heartbeat",
            {"version": stella.__version__, "health": health, "inventory": inventory},
        )
        if response is not None and response.status_code == 200:
            self.interval = self.options.heartbeat_seconds or float(
                response.json()["heartbeat_seconds"]
            )

    def renew_if_due(self, now: datetime | None = None) -> bool:
        """Renew once two thirds of the certificate's lifetime have passed."""
        start, end = certificate_window(self.options.data_dir)
        if (now or datetime.now(UTC)) < start + (end - start) * 2 / 3:
            return False
        self.renew_certificate()
        return True

    def renew_certificate(self) -> None:
        """A new key and certificate; the old certificate stops working when this returns."""
        key_pem, csr_pem = generate_agent_key_and_csr(self.identity.name)
        response = self._post("/agent/v1/certificate", {"csr": csr_pem})
        if response is None or response.status_code != 200:
            log.warning("certificate renewal failed; retrying at the next heartbeat")
            return
        folder = self.options.data_dir
        _write_private(folder / f"{KEY_FILE}.new", key_pem)
        (folder / f"{CERT_FILE}.new").write_text(response.json()["certificate"])
        finish_interrupted_renewal(folder)
        old, self.client = self.client, mtls_client(folder, self.identity.agent_url)
        log.info("certificate renewed (serial %s)", response.json()["serial"])
        old.close()

    def heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.renew_if_due()
                self.heartbeat_once()
            except AgentError as exc:
                self.fatal = str(exc)
                self.stop()
                return
            self.stopping.wait(self.interval)

    # --- tasks -------------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Take and run one task; False when none came within the wait."""
        response = self._post(
            f"/agent/v1/tasks/next?wait={self.options.poll_wait_seconds:g}",
            None,
            timeout=self.options.poll_wait_seconds + 15,
        )
        if response is None or response.status_code == 204:
            return False
        if response.status_code != 200:
            log.warning("task poll answered %s: %s", response.status_code, _detail(response))
            self.stopping.wait(1)
            return False
        body = response.json()
        self.run_task(body)
        return True

    def run_task(self, body: dict[str, Any]) -> None:
        job_id = body["job_id"]
        task = task_from_json(body["task"])
        self.busy_with = job_id
        lines: list[str] = []
        log.info(
            "deploying %s %s to %s (job %s)",
            task.release_name,
            task.release_version,
            task.target_name,
            job_id,
            extra={"correlation_id": body.get("correlation_id"), "job_id": job_id},
        )
        tracer = trace.get_tracer("stella.agent")
        # continue the control plane's trace: the task carries its W3C trace context
        carrier = body.get("trace_context")
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        try:
            with tracer.start_as_current_span("agent.task", context=parent) as span:
                span.set_attribute("deployment.job_id", job_id)
                span.set_attribute("deployment.target", task.target_name)
                span.set_attribute("release.version", task.release_version)
                outcome = self.executor(task.target_type, task.connection).deploy(
                    task, lines.append, self.cancelled, resolve_secret
                )
                span.set_attribute("deployment.succeeded", outcome.succeeded)
        except Exception as exc:  # noqa: BLE001 - any executor failure is the job's failure
            outcome = DeploymentOutcome(False, f"{type(exc).__name__}: {exc}", lines, {}, {})
        finally:
            self.busy_with = None
        self.report(job_id, body["task_token"], outcome)

    def report(self, job_id: str, token: str, outcome: DeploymentOutcome) -> None:
        """Deliver a result, retrying while the control plane is unreachable."""
        deadline = time.monotonic() + RESULT_RETRY_SECONDS
        delay = 0.5
        while time.monotonic() < deadline:
            response = self._post(
                f"/agent/v1/tasks/{job_id}/result",
                outcome.to_json(),
                headers={"X-Stella-Task-Token": token},
            )
            if response is not None and response.status_code < 500:
                if response.status_code != 200:
                    log.warning("result of job %s refused: %s", job_id, _detail(response))
                return
            time.sleep(delay)
            delay = min(delay * 2, 10)
        log.error("gave up delivering the result of job %s", job_id)

    def _post(
        self,
        path: str,
        payload: dict[str, Any] | None,
        timeout: float = 30,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        """POST over mTLS; None when the server is unreachable (callers retry)."""
        client = self.client
        try:
            response = client.post(path, json=payload, timeout=timeout, headers=headers)
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: closed by a renewal
            if client is not self.client:
                return self._post(path, payload, timeout, headers)
            log.warning("agent listener unreachable: %s", type(exc).__name__)
            self.stopping.wait(1)
            return None
        if response.status_code == 401 and client is not self.client:
            return self._post(path, payload, timeout, headers)  # renewed meanwhile: retry
        if response.status_code in (401, 403):
            msg = f"the control plane refused this agent: {_detail(response)}"
            raise AgentError(msg)
        return response

    def run_forever(self) -> None:
        beat = threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stopping.is_set():
                self.poll_once()
        except _Interrupted:
            log.info("agent stopping")
        except AgentError as exc:
            self.fatal = str(exc)
        finally:
            self.stopping.set()
            beat.join(timeout=5)
            self.client.close()
        if self.fatal:
            raise AgentError(self.fatal)

    def stop(self) -> None:
        self.stopping.set()


def run_agent(options: AgentOptions, on_ready: Callable[[Identity], None] | None = None) -> None:
    identity = enrol_if_needed(options)
    agent = Agent(options, identity)
    if on_ready is not None:
        on_ready(identity)

    def shutdown(signum: int, frame: object) -> None:
        agent.stop()
        if agent.busy_with is None:
            raise _Interrupted  # idle: leave the long poll now; busy: finish the task first

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
    agent.run_forever()
