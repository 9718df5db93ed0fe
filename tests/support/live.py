"""A real `stella server` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

STELLA = str(Path(sys.executable).parent / "stella")


@dataclass
class LiveServer:
    """A running server: its URL, home folder and admin token."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    def cli_env(self) -> dict[str, str]:
        return os.environ | {"STELLA_URL": self.url, "STELLA_TOKEN": self.token, "COLUMNS": "200"}

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the `stella` CLI against this server (bounded to 60 s)."""
        result = subprocess.run(
            [STELLA, *args],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"stella {' '.join(args)} failed: {result.stderr}")
        return result

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    argv: list[str],
    home: Path,
    port: int,
    database_url: str | None,
    cwd: Path | None = None,
    timeout: float = 60,
    extra_env: dict[str, str] | None = None,
) -> LiveServer:
    """Start `argv` (e.g. `stella server` or `make run`) and wait until /healthz answers."""
    env = (
        os.environ
        | {
            "STELLA_HOME": str(home),
            "STELLA_LISTEN": f"127.0.0.1:{port}",
            "STELLA_AGENT_LISTEN": f"127.0.0.1:{_free_port()}",
        }
        | (extra_env or {})
    )
    env.pop("STELLA_DATABASE_URL", None)
    if database_url:
        env["STELLA_DATABASE_URL"] = database_url
    log = home.parent / f"{home.name}-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )
    server = LiveServer(f"http://127.0.0.1:{port}", home, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"server did not answer /healthz in {timeout}s: {log.read_text()[-2000:]}")
