#!/usr/bin/env bash
# bootstrap.sh - create .venv with Python 3.11+ and install Stella with pinned dependencies.
# Re-runs only when pyproject.toml or constraints.txt changed (a stamp file records that).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.stamp-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
[ -f "$STAMP" ] && exit 0

pick_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

PY=$(pick_python) || { echo "error: Stella needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    # Debian and Ubuntu ship venv separately from the interpreter.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "[bootstrap] installing python3-venv" >&2
      apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
      "$PY" -m venv "$VENV"
    else
      echo "error: '$PY -m venv' failed; install python3-venv (sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi

echo "[bootstrap] installing Stella and its pinned dependencies into $VENV" >&2
"$VENV/bin/python" -m pip install -q pip==25.3 >&2
"$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]' >&2
rm -f "$VENV"/.stamp-*
touch "$STAMP"
