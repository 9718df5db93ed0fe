"""`make demo`: the whole path on this machine, against real components on loopback.

CI push → release pinned by digest → promotion dev → stage → prod through gates and an approval
→ deployment by agents → version sticker; then someone changes a container by hand, drift shows
it, and a gated rollback restores the previous release. Every step prints the real CLI output.
Needs the loopback Docker engine and registry (`scripts/services.sh` starts them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
STELLA = str(BIN / "stella")
DOCKER_HOST = os.environ.get("TESTENV_DOCKER_HOST", "unix:///tmp/stella-testenv/docker.sock")
REGISTRY = os.environ.get("TESTENV_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("TESTENV_BASE_IMAGE", "local/busybox:1")
ENVIRONMENTS = ("dev", "stage", "prod")
TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def step(title: str) -> None:
    print(f"\n\033[1m==> {title}\033[0m", flush=True)


def run(
    *args: str, env: dict[str, str] | None = None, check: bool = True, quiet: bool = False
) -> str:
    """Run a command, print what it printed (unless quiet: JSON read by the demo), return it."""
    shown = " ".join(a if len(a) < 60 else a[:57] + "…" for a in args)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(
        list(args), env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    out = (result.stderr if quiet else result.stdout + result.stderr).rstrip()
    if out:
        print(out, flush=True)
    if check and result.returncode != 0:
        msg = f"demo failed: {shown} exited {result.returncode}"
        raise SystemExit(msg)
    return result.stdout


def docker(*args: str) -> str:
    return run("docker", *args, env=os.environ | {"DOCKER_HOST": DOCKER_HOST})


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web_ports = {env: free_port() for env in ENVIRONMENTS}
        self.suffix = uuid.uuid4().hex[:6]
        self.repository = f"{REGISTRY}/demo/web-{self.suffix}"
        self.processes: list[subprocess.Popen[bytes]] = []
        # container names carry the run's suffix so a demo never touches anything else
        self.containers = [f"{env}-{self.suffix}-web" for env in ENVIRONMENTS]
        self.alice = ""

    # --- plumbing ----------------------------------------------------------------------------

    def env(self, token: str | None = None) -> dict[str, str]:
        admin = (self.home / "admin.token").read_text().strip()
        return os.environ | {
            "STELLA_URL": self.url,
            "STELLA_TOKEN": token or admin,
            "COLUMNS": "160",
        }

    def stella(
        self, *args: str, token: str | None = None, check: bool = True, quiet: bool = False
    ) -> str:
        return run(STELLA, *args, env=self.env(token), check=check, quiet=quiet)

    def start(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    def wait(self, what: str, condition: object) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                if condition():  # type: ignore[operator]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        msg = f"demo failed: timed out waiting for {what}"
        raise SystemExit(msg)

    def api(self, method: str, path: str, body: object = None) -> dict:
        admin = (self.home / "admin.token").read_text().strip()
        response = httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {admin}"},
        )
        response.raise_for_status()
        return response.json()

    def page(self, env: str) -> str:
        return httpx.get(f"http://127.0.0.1:{self.web_ports[env]}/", timeout=5).text.strip()

    # --- the story ---------------------------------------------------------------------------

    def serve(self) -> None:
        step("Start Stella (embedded SQLite, worker and mutual-TLS agent listener)")
        env = os.environ | {
            "STELLA_HOME": str(self.home),
            "STELLA_LISTEN": f"127.0.0.1:{self.port}",
            "STELLA_AGENT_LISTEN": f"127.0.0.1:{free_port()}",
            "STELLA_AGENT_HEARTBEAT_SECONDS": "2",
            "STELLA_WORKER_POLL_SECONDS": "0.1",
            "STELLA_DRIFT_INTERVAL_SECONDS": "2",
        }
        env.pop("STELLA_DATABASE_URL", None)
        self.start([STELLA, "server"], self.root / "server.log", env)
        self.wait("the server", lambda: httpx.get(f"{self.url}/readyz", timeout=1).is_success)
        print(f"serving on {self.url}")

    def push_images(self) -> None:
        step("CI pushes two versions of an image to the loopback registry")
        for tag in ("v1", "v2"):
            folder = self.root / tag
            folder.mkdir()
            (folder / "index.html").write_text(f"hello from web {tag}\n")
            (folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY index.html /www/\n")
            docker("build", "-q", "-t", f"{self.repository}:{tag}", str(folder))
            docker("push", "-q", f"{self.repository}:{tag}")

    def estate(self) -> None:
        step("Describe the estate: dev → stage → prod (prod needs an approval), one target each")
        estate = {
            "environments": [
                {
                    "name": "Dev",
                    "slug": "dev",
                    "promotion_order": 1,
                    "gates": ["previous_environment", "health_check"],
                },
                {
                    "name": "Stage",
                    "slug": "stage",
                    "promotion_order": 2,
                    "gates": ["previous_environment", "health_check"],
                },
                {
                    "name": "Prod",
                    "slug": "prod",
                    "promotion_order": 3,
                    "is_production": True,
                    "gates": ["previous_environment", "approval", "health_check"],
                    "approval_policy": {"required_approvals": 1, "separation_of_duties": True},
                },
            ],
            "components": [
                {
                    "name": "web",
                    "repository": self.repository,
                    "runtime": {
                        "command": ["httpd", "-f", "-p", "127.0.0.1:${PORT}", "-h", "/www"],
                        "healthcheck": {
                            "http": "http://127.0.0.1:${PORT}/",
                            "interval": "200ms",
                            "retries": 50,
                        },
                    },
                }
            ],
            "targets": [
                {
                    "name": f"{env}-1",
                    "environment": env,
                    "type": "docker_host",
                    "connection": {
                        "container_name_prefix": f"{env}-{self.suffix}-",
                        "project": f"demo-{self.suffix}",
                        "environment": {"PORT": str(self.web_ports[env])},
                        "sticker_path": str(self.root / f"sticker-{env}.json"),
                    },
                }
                for env in ENVIRONMENTS
            ],
        }
        path = self.root / "estate.json"
        path.write_text(json.dumps(estate, indent=2))
        self.stella("apply", "-f", str(path))
        self.alice = self.stella("user", "create", "alice", "--role", "approver").strip()
        print("created approver alice")

    def agents(self) -> None:
        step("Install one agent per environment: a join token, then `stella agent run`")
        for env in ENVIRONMENTS:
            token = self.stella(
                "agent", "token", "create", "--env", env, "--capabilities", "docker,compose"
            ).strip()
            self.start(
                [
                    STELLA,
                    "agent",
                    "run",
                    "--server",
                    self.url,
                    "--join-token",
                    token,
                    "--name",
                    f"agent-{env}",
                    "--data-dir",
                    str(self.root / f"agent-{env}"),
                    "--docker-host",
                    DOCKER_HOST,
                ],
                self.root / f"agent-{env}.log",
                os.environ,
            )
        self.wait(
            "agents online",
            lambda: (
                all(a["state"] == "online" for a in self.api("GET", "/agents")["items"])
                and len(self.api("GET", "/agents")["items"]) == 3
            ),
        )
        self.stella("agent", "list")

    def release(self, version: str, tag: str) -> None:
        step(f"Create release web {version} from tag {tag}: pinned by digest")
        self.stella("release", "create", "--name", "web", "--version", version, "-c", f"web={tag}")

    def promote(self, version: str, env: str) -> dict:
        promotion = json.loads(
            self.stella("promote", f"web@{version}", "--to", env, "-o", "json", quiet=True)
        )
        print(f"promotion {promotion['id']}: {promotion['state']}")
        if promotion["state"] == "awaiting_approval":
            print("the requester may not approve (separation of duties); alice approves:")
            self.stella("approve", promotion["id"], "--comment", "looks good", token=self.alice)
        return self.settle(promotion["id"])

    def settle(self, promotion_id: str) -> dict:
        done = {"deployed", "failed", "rolled_back", "blocked", "rejected"}
        self.wait(
            "the deployment",
            lambda: self.api("GET", f"/promotions/{promotion_id}")["state"] in done,
        )
        promotion = self.api("GET", f"/promotions/{promotion_id}")
        if promotion["state"] != "deployed":
            self.stella("promotion", "show", promotion_id)
            msg = f"demo failed: promotion {promotion_id} is {promotion['state']}"
            raise SystemExit(msg)
        return promotion

    def walk(self, version: str) -> None:
        for env in ENVIRONMENTS:
            step(f"Promote web {version} to {env}")
            self.promote(version, env)
            print(f"{env} now answers: {self.page(env)}")

    def sticker(self) -> None:
        step("The version sticker on prod: container labels and a JSON file")
        docker("inspect", "--format", "{{json .Config.Labels}}", self.containers[2])
        print((self.root / "sticker-prod.json").read_text())
        jobs = self.api("GET", "/deployments?environment=prod")["items"]
        step("The immutable compose lockfile the prod deployment was generated from")
        self.stella("deployment", "artifact", jobs[0]["id"])

    def drift(self) -> None:
        step("Someone replaces the prod container by hand with the old image")
        docker("rm", "-f", self.containers[2])
        docker(
            "run",
            "-d",
            "--init",
            "--network",
            "host",
            "--name",
            self.containers[2],
            f"{self.repository}:v1",
            "httpd",
            "-f",
            "-p",
            f"127.0.0.1:{self.web_ports['prod']}",
            "-h",
            "/www",
        )
        step("Drift check (exit status 3 = drifted)")
        # an inventory taken between the removal and the new container says `missing`: wait
        # for the one that sees the hand-made container with its other digest
        self.wait(
            "the agent's inventory of the hand-made container",
            lambda: (
                "changed_digest"
                in subprocess.run(
                    [STELLA, "drift", "check", "--env", "prod", "-o", "json"],
                    env=self.env(),
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                ).stdout
            ),
        )
        self.stella("drift", "check", "--env", "prod", check=False)

    def rollback(self) -> None:
        step("Roll prod back to the previous release: a gated promotion of kind rollback")
        promotion = json.loads(
            self.stella("rollback", "--env", "prod", "--yes", "-o", "json", quiet=True)
        )
        print(f"rollback {promotion['id']}: {promotion['state']}; alice approves:")
        self.stella("approve", promotion["id"], "--comment", "roll back", token=self.alice)
        self.settle(promotion["id"])
        print(f"prod now answers: {self.page('prod')}")
        self.stella("promotion", "list", "--env", "prod")
        step("Drift check after the rollback")
        self.wait(
            "prod in sync",
            lambda: (
                subprocess.run(
                    [STELLA, "drift", "check", "--env", "prod"],
                    env=self.env(),
                    capture_output=True,
                    timeout=30,
                    check=False,
                ).returncode
                == 0
            ),
        )
        self.stella("drift", "check", "--env", "prod")

    def cleanup(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        subprocess.run(
            [shutil.which("docker") or "docker", "rm", "-f", *self.containers],
            capture_output=True,
            env=os.environ | {"DOCKER_HOST": DOCKER_HOST},
            timeout=60,
            check=False,
        )


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="stella-demo-"))
    demo = Demo(root)
    try:
        demo.serve()
        demo.push_images()
        demo.estate()
        demo.agents()
        demo.release("1.0.0", "v1")
        demo.walk("1.0.0")
        demo.release("2.0.0", "v2")
        demo.walk("2.0.0")
        demo.sticker()
        demo.drift()
        demo.rollback()
        step("Done: every decision, deployment and rollback is recorded (stella audit list)")
    finally:
        demo.cleanup()
        if os.environ.get("STELLA_DEMO_KEEP"):
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
