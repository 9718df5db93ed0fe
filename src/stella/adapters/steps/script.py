"""`script` steps: a command in a subprocess, with timeout, cancellation and bounded output.

A string command runs with `/bin/sh -c`; a list runs as argv. `key=value` lines written to the
file named by `$STELLA_OUTPUT` become the step's outputs. `rollback_command` makes the step
rollback-capable. The process group is killed on timeout or cancellation.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stella.adapters.masking import SecretValues
from stella.adapters.secrets import resolve_secret
from stella.adapters.steps.output import BoundedOutput
from stella.domain.errors import StellaError
from stella.domain.secrets import parse_secret_ref
from stella.services.steps import StepCharacteristics, StepContext, StepResult

MAX_OUTPUT_FILE_BYTES = 64 * 1024
_OUTPUT_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "DOCKER_HOST", "TMPDIR")

Command = str | list[str]


class ScriptConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Command = Field(min_length=1)
    rollback_command: Command | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None


# The step's process group is led by this small supervisor. It runs the command and, should the
# worker die (it is re-parented), kills the whole group: a killed worker leaves no step behind
# that could overlap the attempt another worker starts.
_SUPERVISOR = """
import os, signal, subprocess, sys
parent = os.getppid()
try:
    child = subprocess.Popen(sys.argv[1:])
except OSError as exc:
    print(f"cannot start command: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
while True:
    try:
        code = child.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)
        continue
    sys.exit(code if code >= 0 else 128 - code)
"""


def _argv(command: Command) -> list[str]:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    return [sys.executable, "-I", "-S", "-c", _SUPERVISOR, *argv]


def _read_outputs(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    outputs: dict[str, Any] = {}
    with path.open("rb") as handle:
        data = handle.read(MAX_OUTPUT_FILE_BYTES)
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and _OUTPUT_KEY_RE.match(key.strip()):
            outputs[key.strip()] = value
    return outputs


def run_command(
    command: Command, context: StepContext, env: Mapping[str, str], workdir: str | None
) -> StepResult:
    """Run one command for `context`; the result carries outputs and the (bounded) log."""
    cwd = Path(workdir) if workdir else context.workdir / str(context.run_id) / context.step_id
    cwd.mkdir(parents=True, exist_ok=True)
    output_file = cwd / f".stella-output-{context.attempt}"
    output_file.unlink(missing_ok=True)
    child_env = (
        {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        | dict(env)
        | {
            "STELLA_RUN_ID": str(context.run_id),
            "STELLA_STEP_ID": context.step_id,
            "STELLA_ATTEMPT": str(context.attempt),
            "STELLA_IDEMPOTENCY_KEY": context.idempotency_key,
            "STELLA_OUTPUT": str(output_file),
        }
    )
    log = BoundedOutput()
    try:
        process = subprocess.Popen(
            _argv(command),
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return StepResult("failed", error=f"cannot start command: {exc.strerror}", retryable=False)
    assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
    reader = log.drain(process.stdout)
    stopped = _wait(process, context)
    reader.join(timeout=5)
    process.stdout.close()
    if stopped == "timeout":
        seconds = context.timeout.total_seconds()
        return StepResult("failed", error=f"timed out after {seconds:g}s", log=log.text())
    if stopped == "cancelled":
        return StepResult("failed", error="cancelled", log=log.text(), retryable=False)
    if process.returncode != 0:
        error = f"command exited with status {process.returncode}"
        return StepResult("failed", error=error, log=log.text())
    return StepResult("succeeded", outputs=_read_outputs(output_file), log=log.text())


def _wait(process: subprocess.Popen[bytes], context: StepContext) -> str | None:
    while True:
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() > context.deadline:
                _kill(process)
                return "timeout"
            if context.cancelled.is_set():
                _kill(process)
                return "cancelled"
        else:
            return None


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def resolve_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Resolve `env:NAME` / `file:/path` values just in time; returns (env, secret values)."""
    resolved: dict[str, str] = {}
    secrets: list[str] = []
    for name, value in env.items():
        try:
            reference = parse_secret_ref(value)
        except ValueError:
            resolved[name] = value
            continue
        resolved[name] = resolve_secret(str(reference))
        secrets.append(resolved[name])
    return resolved, secrets


def mask(result: StepResult, secrets: list[str]) -> StepResult:
    """Replace secret values in the log and outputs by `***` (values of 4+ characters, in
    every form they are printed in: quoted, JSON- or Go-escaped, line by line)."""
    values = SecretValues()
    for secret in secrets:
        values.add(secret)
    clean = values.mask
    outputs = {k: clean(v) if isinstance(v, str) else v for k, v in result.outputs.items()}
    return replace(
        result,
        log=clean(result.log),
        outputs=outputs,
        error=clean(result.error) if result.error else None,
    )


class ScriptStep:
    """Runs shell commands; not idempotent, so it receives STELLA_IDEMPOTENCY_KEY.

    `env` values may be secret references (`env:NAME`, `file:/path`), resolved on the worker
    when the step runs and masked in the step's log and outputs.
    """

    characteristics = StepCharacteristics(idempotent=False, supports_rollback=True)
    config_model = ScriptConfig

    def execute(self, context: StepContext) -> StepResult:
        config = ScriptConfig.model_validate(context.config)
        return self._run(config.command, config, context)

    def rollback(self, context: StepContext) -> StepResult:
        config = ScriptConfig.model_validate(context.config)
        if config.rollback_command is None:
            return StepResult("succeeded")
        return self._run(config.rollback_command, config, context)

    def _run(self, command: Command, config: ScriptConfig, context: StepContext) -> StepResult:
        try:
            env, secrets = resolve_env(config.env)
        except StellaError as exc:
            return StepResult("failed", error=exc.detail, retryable=False)
        return mask(run_command(command, context, env, config.workdir), secrets)

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("rollback_command"))
