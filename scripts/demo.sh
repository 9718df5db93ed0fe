#!/usr/bin/env bash
# demo.sh - what `make demo` runs: start the loopback Docker engine and registry, then walk a
# release dev → stage → prod through agents, show drift after a hand change, and roll back.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
exec .venv/bin/python scripts/demo.py
