"""An SSH connection that carries a remote Docker socket, stickers and health probes.

asyncssh is asynchronous while the executors are synchronous (they run on a worker thread), so
the tunnel runs its own event loop on a background thread for as long as it is open and the
synchronous side submits coroutines to it. The remote Docker socket is forwarded to a unix
socket in a private (0700) temporary folder; the Docker SDK and docker compose talk to that.

Host keys are always checked against the configured known_hosts file: there is no "accept new
key" mode, and a missing file is a configuration error. Only the given identity file is offered
(no ssh-agent, no ~/.ssh/config), so what a target uses is what its settings say.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import posixpath
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncssh
import httpx

from stella.adapters.executors.errors import DeploymentFailed, ExecutorError, TargetUnreachable
from stella.adapters.executors.sticker import sticker_bytes, sticker_target

T = TypeVar("T")
CONNECT_SECONDS = 15.0
CALL_SECONDS = 60.0  # one SFTP write or port forward set-up
CLOSE_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class SshTarget:
    """The `connection` settings of an SSH target, checked."""

    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    docker_socket: str
    mode: str
    passphrase: str | None  # a secret reference, resolved when connecting

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @staticmethod
    def parse(connection: dict[str, Any]) -> SshTarget:
        missing = [
            k for k in ("host", "user", "identity_file", "known_hosts") if not connection.get(k)
        ]
        if missing:
            msg = f"ssh connection settings lack {', '.join(missing)} (known_hosts is required)"
            raise ExecutorError(msg)
        mode = str(connection.get("mode") or "docker")
        if mode not in {"docker", "compose"}:
            msg = f"ssh mode must be docker or compose, not {mode!r}"
            raise ExecutorError(msg)
        try:
            port = int(connection.get("port") or 22)
        except (TypeError, ValueError):
            port = -1
        if not 0 < port < 65536:
            msg = f"ssh port {connection.get('port')!r} is not a TCP port"
            raise ExecutorError(msg)
        passphrase = connection.get("passphrase")
        return SshTarget(
            host=str(connection["host"]),
            port=port,
            user=str(connection["user"]),
            identity_file=str(connection["identity_file"]),
            known_hosts=str(connection["known_hosts"]),
            docker_socket=str(connection.get("docker_socket") or "/var/run/docker.sock"),
            mode=mode,
            passphrase=str(passphrase) if passphrase else None,
        )


class SshTunnel:
    """Open with `with`; offers `docker_host`, `write_sticker` and `http_get` while open."""

    def __init__(
        self,
        target: SshTarget,
        resolve_secret: Callable[[str], str],
        sticker_root: str | Path | None = None,
        connect_seconds: float = CONNECT_SECONDS,
    ) -> None:
        self.target = target
        self.sticker_root = sticker_root
        self.connect_seconds = connect_seconds
        self._resolve_secret = resolve_secret
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._folder = ""
        self._conn: asyncssh.SSHClientConnection | None = None
        self._listeners: list[asyncssh.SSHListener] = []
        self._ports: dict[tuple[str, int], int] = {}

    @property
    def docker_host(self) -> str:
        return f"unix://{self._folder}/docker.sock"

    def __enter__(self) -> SshTunnel:
        if not Path(self.target.known_hosts).is_file():
            msg = (
                f"known_hosts file {self.target.known_hosts} does not exist; "
                "host keys are always checked"
            )
            raise ExecutorError(msg)
        passphrase = (
            self._resolve_secret(self.target.passphrase) if self.target.passphrase else None
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="stella-ssh", daemon=True
        )
        self._thread.start()
        try:
            self._folder = tempfile.mkdtemp(prefix="stella-ssh-")
            opening = self._open(passphrase)
            self._call(opening, self.connect_seconds + CLOSE_SECONDS, "connecting")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close forwards and connection, stop the loop thread, remove the socket folder."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(TargetUnreachable, asyncssh.Error, OSError):
                self._call(self._close(), CLOSE_SECONDS * 2, "closing")
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CLOSE_SECONDS)
        if loop is not None and not (thread and thread.is_alive()) and not loop.is_closed():
            loop.close()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    # -- synchronous services for the executors ---------------------------------------------

    def write_sticker(self, sticker_path: str, body: dict[str, Any]) -> str:
        """Write the sticker on the remote host over SFTP (temp file, then rename)."""
        target = str(sticker_target(sticker_path, self.sticker_root))
        try:
            self._call(self._write(target, sticker_bytes(body)), CALL_SECONDS, "writing")
        except (asyncssh.Error, OSError, TargetUnreachable) as exc:
            msg = f"writing the sticker {self.target.address}:{target} failed: {_reason(exc)}"
            raise DeploymentFailed(msg) from None
        return f"{self.target.address}:{target}"

    def http_get(self, url: str, timeout: float) -> int:
        """GET `url` as seen from the remote host, through a forwarded local port."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            local = self._ports.get((host, port)) or self._call(
                self._forward_port(host, port), CALL_SECONDS, "forwarding"
            )
        except (asyncssh.Error, TargetUnreachable) as exc:
            msg = f"cannot forward {host}:{port} over ssh: {_reason(exc)}"
            raise OSError(msg) from None
        local_url = urlunsplit(
            (parts.scheme, f"127.0.0.1:{local}", parts.path or "/", parts.query, "")
        )
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                response = client.get(
                    local_url, headers={"Host": parts.netloc}, extensions={"sni_hostname": host}
                )
        except httpx.HTTPError as exc:
            msg = f"{type(exc).__name__}: {exc}"
            raise OSError(msg) from None
        return response.status_code

    # -- coroutines on the tunnel's loop ----------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T], seconds: float, doing: str) -> T:
        if self._loop is None:
            coroutine.close()
            msg = f"the ssh connection to {self.target.address} is not open"
            raise TargetUnreachable(msg)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            msg = f"ssh to {self.target.address} timed out while {doing}"
            raise TargetUnreachable(msg) from None

    async def _open(self, passphrase: str | None) -> None:
        target = self.target
        try:
            self._conn = await asyncssh.connect(
                target.host,
                port=target.port,
                username=target.user,
                client_keys=[target.identity_file],
                passphrase=passphrase,
                known_hosts=target.known_hosts,
                agent_path=None,
                config=None,
                connect_timeout=self.connect_seconds,
                login_timeout=self.connect_seconds,
                keepalive_interval=KEEPALIVE_SECONDS,
            )
        except asyncssh.HostKeyNotVerifiable:
            msg = (
                f"host key of {target.address} is not trusted (known_hosts {target.known_hosts}); "
                "refusing to connect"
            )
            raise ExecutorError(msg) from None
        except asyncssh.PermissionDenied:
            msg = f"ssh login as {target.user} on {target.address} was refused"
            raise ExecutorError(msg) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError):
            msg = f"identity file {target.identity_file} cannot be used"
            raise ExecutorError(msg) from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            msg = f"cannot connect to {target.address} over ssh: {_reason(exc)}"
            raise TargetUnreachable(msg) from None
        try:
            listener = await self._conn.forward_local_path(
                f"{self._folder}/docker.sock", target.docker_socket
            )
        except (OSError, asyncssh.Error) as exc:
            msg = f"forwarding {target.docker_socket} of {target.address} failed: {_reason(exc)}"
            raise TargetUnreachable(msg) from None
        self._listeners.append(listener)

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            msg = f"the ssh connection to {self.target.address} is not open"
            raise TargetUnreachable(msg)
        return self._conn

    async def _forward_port(self, host: str, port: int) -> int:
        listener = await self._connection().forward_local_port("127.0.0.1", 0, host, port)
        self._listeners.append(listener)
        self._ports[(host, port)] = listener.get_port()
        return listener.get_port()

    async def _write(self, path: str, data: bytes) -> None:
        parent = posixpath.dirname(path)
        temp = posixpath.join(parent, f".{posixpath.basename(path)}.{secrets.token_hex(4)}")
        async with self._connection().start_sftp_client() as sftp:
            await sftp.makedirs(parent, exist_ok=True)
            async with sftp.open(temp, "wb") as handle:
                await handle.write(data)
            try:
                await sftp.chmod(temp, 0o644)
                await sftp.posix_rename(temp, path)
            except asyncssh.SFTPError:
                await sftp.remove(temp)
                raise

    async def _close(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._conn is not None:
            self._conn.close()
            await asyncio.wait_for(self._conn.wait_closed(), CLOSE_SECONDS)


def _reason(exc: BaseException) -> str:
    """A short reason from asyncssh, OS and Stella errors (never a traceback)."""
    for attribute in ("reason", "detail", "strerror"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str) and value:
            return value
    return str(exc) or type(exc).__name__
