"""Serving an ASGI app over mutual TLS with uvicorn, with the client certificate in the scope.

uvicorn verifies client certificates (`ssl_cert_reqs=CERT_REQUIRED`) but does not pass them to
the app. asyncio calls the protocol's `connection_made` only after the TLS handshake has
completed, so that is where the verified peer certificate is read. The protocol object lives
exactly as long as its connection, so wrapping `self.app` there scopes the certificate to that
connection: every keep-alive request on it sees the same certificate, and no other connection
can ever see it. The certificate travels in the ASGI TLS extension,
`scope["extensions"]["tls"]`, as `client_cert` (DER bytes) and `client_cert_chain` (PEM).

The listener is HTTP/1.1 over h11 only: WebSocket upgrades are switched off because uvicorn's
WebSocket protocols take the unwrapped app from the config and would serve requests without the
certificate, and proxy headers are ignored because nothing may sit between an agent and its
TLS endpoint.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


class _WithClientCertificate:
    """The app, plus this connection's client certificate in each request's scope."""

    def __init__(self, app: ASGIApp, cert_der: bytes) -> None:
        self.app = app
        self.tls = {
            "client_cert": cert_der,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(cert_der)],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn builds a fresh scope per request; the extensions dict is rebuilt rather than
        # updated in case something upstream shares one between scopes.
        extensions = dict(scope.get("extensions") or {})
        extensions["tls"] = {**extensions.get("tls", {}), **self.tls}
        scope["extensions"] = extensions
        await self.app(scope, receive, send)


class MutualTLSProtocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the verified client certificate to the app."""

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert_der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not cert_der:
            # CERT_REQUIRED makes this unreachable; fail closed should the listener ever be
            # configured without it, rather than serve anonymous requests.
            self.logger.warning("closing a connection that presented no client certificate")
            transport.close()
            return
        self.app = _WithClientCertificate(self.app, cert_der)


LISTENER_KEEPALIVE_SECONDS = 75.0  # longer than the agent keeps its end (agent.runner)


def mtls_server_config(
    app: ASGIApp,
    host: str,
    port: int,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    log_level: str = "warning",
) -> uvicorn.Config:
    """A uvicorn config serving `app` to clients holding a certificate issued by `ca_file`.

    Pass the result to `uvicorn.Server(config)`. Logging is left to the process's own setup
    (`log_config=None`), as for the main API server.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=MutualTLSProtocol,
        ws="none",
        proxy_headers=False,
        log_config=None,
        log_level=log_level,
        access_log=False,
        ssl_certfile=cert_file,
        ssl_keyfile=key_file,
        ssl_ca_certs=ca_file,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ssl_context_factory=_hardened,
        # agents heartbeat every 30 s by default: keep their connection (and its TLS handshake)
        timeout_keep_alive=int(LISTENER_KEEPALIVE_SECONDS),
    )


def peer_certificate(request: Request) -> bytes | None:
    """The DER client certificate of the connection `request` arrived on, if any."""
    tls = request.scope.get("extensions", {}).get("tls", {})
    cert = tls.get("client_cert")
    return cert if isinstance(cert, bytes) else None


def _hardened(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context (cert, key, CA, CERT_REQUIRED) with TLS 1.2 as the floor and strict
    X.509 checks, which also keeps our own certificates honest (Python 3.13 clients are
    strict by default)."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context
