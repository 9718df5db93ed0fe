#!/usr/bin/env bash
# test.sh - what `make test` runs: start the real services, lint, type-check, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

if [ "$(id -u)" = 0 ]; then
  # Private dockerd (no bridge, no iptables), registry on 127.0.0.1:5000, sshd on 127.0.0.1:2222.
  eval "$(scripts/testenv/up.sh)"
  scripts/postgres-up.sh
else
  echo "[test] not root: using services that are already running (CI runs as root)" >&2
fi

echo "[test] ruff format --check, ruff check, mypy" >&2
$BIN/ruff format --check src tests bench
$BIN/ruff check src tests bench
$BIN/mypy src

echo "[test] pytest" >&2
$BIN/pytest "$@"
