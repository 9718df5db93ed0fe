"""Compiles each policy version once and evaluates `data.stella.promotion.deny` against inputs.

regopy has no time limit of its own, so an evaluation runs in a worker thread and the gate
fails closed when it does not answer within `timeout_seconds` (the thread is abandoned).
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from regopy import Interpreter, RegoError

from stella.domain.errors import FieldError, ValidationFailed
from stella.services.gates import PolicyFailure

PACKAGE = "stella.promotion"
QUERY = f"data.{PACKAGE}.deny"
_PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
_ERROR_RE = re.compile(r"\(error \d+:[^|]*\|(\d+)\|\d+")
_MESSAGE_RE = re.compile(r"\(errormsg \d+:([^)]*)\)")


def check_policy(rego: str) -> None:
    """Reject a policy that does not parse, naming the line and the message."""
    package = _PACKAGE_RE.search(rego)
    if package is None or package.group(1) != PACKAGE:
        raise ValidationFailed.single("rego", f"the policy must declare `package {PACKAGE}`")
    try:
        interpreter = Interpreter()
        interpreter.add_module("policy", rego)
        interpreter.build(QUERY)
    except RegoError as exc:
        raise ValidationFailed.of([FieldError("rego", describe_error(str(exc), rego))]) from None


def describe_error(text: str, source: str = "") -> str:
    """`line 3, column 22: this is unclosed` from regopy's error report.

    regopy reports `(error <n>:<module>|<offset>|<length> (errormsg <n>:<message>) …)`; the
    character offset is turned into a line and column of the policy source.
    """
    location = _ERROR_RE.search(text)
    message = _MESSAGE_RE.search(text)
    reason = message.group(1).strip() if message else "the policy does not compile"
    if location is None:
        return reason
    offset = int(location.group(1))
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}: {reason}"


class _Compiled:
    def __init__(self, rego: str) -> None:
        self.interpreter = Interpreter()
        self.interpreter.add_module("policy", rego)
        self.bundle = self.interpreter.build(QUERY)
        self.lock = threading.Lock()  # one interpreter evaluates one input at a time

    def deny(self, document: dict[str, Any]) -> list[str]:
        with self.lock:
            self.interpreter.set_input(document)
            output = json.loads(str(self.interpreter.query_bundle(self.bundle)))
        expressions = output.get("expressions") or [[]]
        value = expressions[0]
        if not isinstance(value, list):
            msg = "deny is not a set of messages"
            raise PolicyFailure(msg)
        return sorted(str(v) for v in value)


class RegoPolicyEvaluator:
    """PolicyEvaluator with one compiled bundle per policy hash."""

    def __init__(self, timeout_seconds: float = 2.0) -> None:
        self._timeout = timeout_seconds
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rego")

    def _get(self, rego: str, policy_hash: str) -> _Compiled:
        with self._lock:
            compiled = self._compiled.get(policy_hash)
        if compiled is None:
            try:
                compiled = _Compiled(rego)
            except RegoError as exc:
                raise PolicyFailure(describe_error(str(exc), rego)) from None
            with self._lock:
                self._compiled[policy_hash] = compiled
        return compiled

    def deny(self, name: str, rego: str, policy_hash: str, document: dict[str, Any]) -> list[str]:
        compiled = self._get(rego, policy_hash)
        future = self._pool.submit(compiled.deny, document)
        try:
            return future.result(timeout=self._timeout)
        except FutureTimeout:
            msg = f"timed out after {self._timeout:g}s"
            raise PolicyFailure(msg) from None
        except PolicyFailure:
            raise
        except (RegoError, ValueError) as exc:
            raise PolicyFailure(str(exc).splitlines()[0]) from None
