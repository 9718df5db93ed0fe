#!/usr/bin/env bash
# postgres-up.sh - make sure a PostgreSQL with trust auth answers on 127.0.0.1:5432.
# Uses the one already running when there is one; otherwise installs PostgreSQL from apt
# (when missing) and starts a throwaway cluster owned by the test run under $STELLA_PG_DIR.
set -euo pipefail
PGDIR="${STELLA_PG_DIR:-/tmp/stella-pg}"
PORT=5432

answers() { python3 - "$PORT" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

if answers; then
  echo "[postgres] using the server on 127.0.0.1:$PORT" >&2
  exit 0
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "error: PostgreSQL is not installed; run as root or install postgresql" >&2; exit 1; }
  echo "[postgres] installing postgresql" >&2
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -q postgresql >&2
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
install -d -o postgres -g postgres "$PGDIR"
if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
  su postgres -c "$BIN/initdb -D $PGDIR/data -U postgres --auth=trust -E UTF8 --no-sync" >&2
fi
echo "[postgres] starting a throwaway cluster in $PGDIR on 127.0.0.1:$PORT" >&2
su postgres -c "$BIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -w -o '-c listen_addresses=127.0.0.1 -p $PORT -k $PGDIR -c fsync=off' start" >&2
answers || { echo "error: PostgreSQL did not come up; see $PGDIR/log" >&2; exit 1; }
