#!/usr/bin/env bash
# test.sh - what `make test` runs: start the real services, lint, type-check, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

. scripts/services.sh

echo "[test] ruff format --check, ruff check, mypy" >&2
$BIN/ruff format --check src tests bench scripts
$BIN/ruff check src tests bench scripts
$BIN/mypy src

echo "[test] pytest" >&2
# two workers: the deployment end-to-end tests wait on real engines more than they compute
$BIN/pytest -n "${STELLA_TEST_WORKERS:-2}" "$@"
