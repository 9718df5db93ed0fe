# services.sh - sourced by test.sh and bench.sh: start the real services the project needs.
# As root: a private dockerd (no bridge, no iptables), a registry on 127.0.0.1:5000, sshd on
# 127.0.0.1:2222 (scripts/testenv/up.sh) and PostgreSQL on 127.0.0.1:5432 when absent.
# Otherwise the services are assumed to run already (CI runs as root).
if [ "$(id -u)" = 0 ]; then
  # chromium: the browser the UI tests drive (through Playwright, with executable_path)
  eval "$(TESTENV_APT_EXTRA="docker-compose chromium ${TESTENV_APT_EXTRA:-}" scripts/testenv/up.sh)"
  scripts/postgres-up.sh
else
  echo "[services] not root: using services that are already running (CI runs as root)" >&2
fi
