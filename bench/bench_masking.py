"""Log masking: the cost of masking per log line, in process.

Every log record goes through `stella.logging_setup.JsonFormatter`, whose pre-chain masks the
message, the exception text and every field (`mask_event`). This benchmark formats the same
records with that formatter and with an otherwise identical formatter whose pre-chain leaves
out `mask_event`, so the difference is the masking alone.

Records (a fixed, repeating mix, built before the clock starts):

- request lines (method, path, status, duration_ms, request_id), the bulk of a server's log;
- promotion lines (promotion, release and environment ids, environment, outcome);
- workflow step lines (run, step, attempt, step type, worker);
- one line in 20 carries a resolved secret value in its message, one in 50 a `Bearer` header,
  one in 100 an exception with a URL with credentials.

Cases: 0, 10 and 200 registered token-like secret values (`register_secret`, as
`resolve_secret` does).
Each case formats LINES records (after WARMUP unmeasured ones) and is bounded by BUDGET
seconds (`truncated` says when it stopped early); the cases take turns, REPEATS times, and the
best run of each counts, since this is CPU-bound and other processes share the machine. `mask`
alone is also timed, on each line's message.

Run: .venv/bin/python -m bench.bench_masking (from the repository root);
`--lines N` for a quick try with fewer. Results go to bench/results/masking.json.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from bench.bench_workflows import source_commit
from bench.common import exit_cleanly_on_sigterm, log, write_result
from stella.adapters.masking import forget_secrets, mask, register_secret
from stella.logging_setup import JsonFormatter, _chain, record_fields, request_id_var

LINES = 20_000
WARMUP = 500
REPEATS = 5
BUDGET = 30.0  # seconds per measured run
SECRET_COUNTS = (0, 10, 200)


class UnmaskedFormatter(structlog.stdlib.ProcessorFormatter):
    """`JsonFormatter` without `mask_event`: the same fields, the same JSON renderer."""

    def __init__(self) -> None:
        super().__init__(
            processors=_chain(False), foreign_pre_chain=[record_fields], pass_foreign_args=False
        )


def secret_value(n: int) -> str:
    """A token-like value (32 URL-safe base64 characters), the same on every run."""
    return base64.urlsafe_b64encode(hashlib.sha256(f"secret-{n}".encode()).digest())[:32].decode()


def records(count: int, secrets: int) -> list[logging.LogRecord]:
    """A repeating mix of the lines a server, worker and agent write."""
    out: list[logging.LogRecord] = []
    for i in range(count):
        extra: dict[str, Any] = {}
        if i % 100 == 99:
            try:
                raise RuntimeError(f"cannot connect to postgresql://stella:pw{i}@db:5432/stella")
            except RuntimeError:
                exc_info = sys.exc_info()
            msg, args = "worker step failed", ()
        else:
            exc_info = None
            if i % 20 == 19 and secrets:
                msg, args = "resolved environment: DB_PASSWORD=%s", (secret_value(i % secrets),)
            elif i % 50 == 49:
                msg, args = "calling webhook with Authorization: Bearer %s", (f"tok{i:08d}xyz",)
            elif i % 4 == 1:
                msg, args = "promotion %s %s", (f"p-{i}", "approved")
                extra = {
                    "promotion_id": f"p-{i}",
                    "release_id": f"r-{i % 97}",
                    "environment_id": f"e-{i % 5}",
                    "environment": ("dev", "staging", "prod")[i % 3],
                    "outcome": "approved",
                }
            elif i % 4 == 2:
                msg, args = "step %s finished", (f"s-{i}",)
                extra = {
                    "run_id": f"run-{i // 10}",
                    "step_id": f"s-{i}",
                    "attempt": 1,
                    "step_type": "deploy",
                    "worker": "worker-1",
                }
            else:
                msg, args = "request", ()
                extra = {
                    "method": "GET",
                    "path": f"/api/v1/releases/{i}",
                    "status": 200,
                    "duration_ms": 3.2,
                }
        record = logging.LogRecord(
            "stella.api", logging.INFO, __file__, 1, msg, args, exc_info, func=None
        )
        record.__dict__.update(extra)
        out.append(record)
    return out


def run(
    cases: dict[str, tuple[Callable[[Any], object], list[Any]]], repeats: int = REPEATS
) -> dict[str, dict[str, Any]]:
    """Each case (a function and the items it is called with, once each) timed `repeats`
    times, the cases taking turns (so a change of the machine's load hits all of them alike);
    the best run of each counts."""
    for call, items in cases.values():
        for item in items[:WARMUP]:
            call(item)
    best: dict[str, float] = {}
    done: dict[str, int] = {}
    truncated = False
    for _ in range(repeats):
        for name, (call, items) in cases.items():
            deadline = time.monotonic() + BUDGET
            count = 0
            started = time.perf_counter()
            for item in items:
                if count % 1000 == 0 and time.monotonic() > deadline:
                    truncated = True
                    break
                call(item)
                count += 1
            elapsed = time.perf_counter() - started
            if name not in best or elapsed / count < best[name] / done[name]:
                best[name], done[name] = elapsed, count
    return {
        name: {
            "lines": done[name],
            "seconds": round(best[name], 4),
            "lines_per_second": round(done[name] / best[name]),
            "us_per_line": round(best[name] / done[name] * 1e6, 2),
            "truncated": truncated,
        }
        for name in cases
    }


def bench_case(secrets: int, count: int) -> dict[str, Any]:
    forget_secrets()
    for n in range(secrets):
        register_secret(secret_value(n))
    lines = records(count, secrets)
    masked, unmasked = JsonFormatter(), UnmaskedFormatter()
    token = request_id_var.set("req-0123456789abcdef")
    try:
        results = run(
            {
                "without_masking": (unmasked.format, lines),
                "with_masking": (masked.format, lines),
                "mask_one_message": (mask, [record.getMessage() for record in lines]),
            }
        )
        # the masked output must not carry a registered value (the benchmark measures real work)
        sample = "".join(masked.format(record) for record in lines[:200])
    finally:
        request_id_var.reset(token)
    forget_secrets()
    return {
        "registered_secrets": secrets,
        **results,
        "masking_overhead_factor": round(
            results["with_masking"]["us_per_line"] / results["without_masking"]["us_per_line"], 2
        ),
        "leaked": any(secret_value(n) in sample for n in range(secrets)) or "pw99@" in sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=LINES)
    args = parser.parse_args()
    count = max(WARMUP, min(args.lines, LINES))
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    load_before = os.getloadavg()
    cases = []
    for secrets in SECRET_COUNTS:
        case = bench_case(secrets, count)
        cases.append(case)
        log(
            f"{secrets:>3} secrets: {case['without_masking']['lines_per_second']:>7} lines/s "
            f"without masking, {case['with_masking']['lines_per_second']:>7} with "
            f"(x{case['masking_overhead_factor']}); mask() alone "
            f"{case['mask_one_message']['us_per_line']} us/line"
            + ("; A SECRET LEAKED" if case["leaked"] else "")
        )
    path = write_result(
        "masking",
        {
            "benchmark": "log masking: JSON log lines per second with and without masking",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": source_commit(),
            "logical_cpus": os.cpu_count(),
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "duration_seconds": round(time.perf_counter() - started, 1),
            "cases": cases,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
