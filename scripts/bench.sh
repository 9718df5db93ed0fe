#!/usr/bin/env bash
# bench.sh - what `make bench` runs: start the real services, run the benchmarks in bench/,
# keep the raw results in bench/results/ and write docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

. scripts/services.sh

# tests/conftest.py (database helpers) imports Starlette's TestClient, which warns about httpx.
PY=("$BIN/python" -W "ignore:Using \`httpx\` with \`starlette.testclient\` is deprecated")
# Each benchmark is bounded in time: on SIGTERM it stops its server and drops its databases.
run() { timeout --kill-after=30 "$1" "${PY[@]}" -m "$2"; }

mkdir -p bench/results
BENCH_DATE="$(date -u)"
export BENCH_DATE
echo "[bench] release creation (SQLite, PostgreSQL)" >&2
run 300 bench.bench_create
echo "[bench] list queries at 100,000 releases (SQLite, PostgreSQL)" >&2
run 300 bench.bench_list
echo "[bench] workflow engine: overhead, throughput, recovery (SQLite, PostgreSQL)" >&2
run 600 bench.bench_workflows
echo "[bench] promotion gates: 50-rule policy, 1 client and 100 concurrent (SQLite, PostgreSQL)" >&2
run 300 bench.bench_gates
echo "[bench] deployments: overhead vs docker CLI and Ansible, fan-out, 100 at once, 10,000 agents' heartbeats (SQLite, PostgreSQL)" >&2
run 2400 bench.bench_deployments
echo "[bench] evidence: sealing, export, offline verify and audit chain at 10,000 packets (SQLite, PostgreSQL)" >&2
run 900 bench.bench_evidence
echo "[bench] security matching: 10,000 SBOM components against 50,000 OSV advisories" >&2
run 300 bench.bench_security_matching
echo "[bench] security re-evaluation: 1,000 stored SBOMs after importing 100 new advisories (SQLite, PostgreSQL)" >&2
run 900 bench.bench_security_reevaluation
echo "[bench] API throughput: read and write endpoints, 1 and 4 API processes, tracing on and off (SQLite, PostgreSQL)" >&2
run 900 bench.bench_api
echo "[bench] log masking: JSON log lines per second with and without the masking processor" >&2
run 300 bench.bench_masking
"${PY[@]}" -m bench.report
