"""The CLI's client waits out a server that answers 503 or is briefly unreachable, and a retried
POST carries the same Idempotency-Key (so the server answers it instead of acting twice).

The server here is a scripted loopback HTTP server (named as such): it plays back the answers a
restarting Stella gives, which a real server cannot be made to give on cue; the server side of
idempotency is tested against the real server in tests/e2e/test_idempotency.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stella.cli.client import CliError, StellaClient


class ScriptedServer:
    """Answers each request with the next (status, headers) of its script, then 201 forever."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str | None]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                scripted.seen.append((self.path, self.headers.get("idempotency-key")))
                status, headers = scripted.script.pop(0) if scripted.script else (201, {})
                body = json.dumps({"title": "scripted", "detail": "scripted", "status": status})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/problem+json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_POST  # noqa: N815

            def log_message(self, *_args: object) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(script: list[tuple[int, dict[str, str]]]) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        server.close()


def test_a_post_answered_503_is_retried_with_the_same_key(scripted, monkeypatch):
    monkeypatch.setenv("STELLA_RETRIES", "3")
    server = scripted([(503, {"Retry-After": "0"}), (503, {"Retry-After": "0"})])
    with StellaClient(server.url, "stl_test") as client:
        answer = client.post("/promotions", {"release_id": "x"})
    assert answer["status"] == 201
    keys = [key for _, key in server.seen]
    assert len(keys) == 3
    assert keys[0] is not None
    assert len(set(keys)) == 1, "every attempt of one command carries one key"
    with StellaClient(server.url, "stl_test") as client:
        client.post("/promotions", {})
    assert server.seen[-1][1] != keys[0], "another command gets another key"


def test_retries_are_bounded_and_the_last_answer_is_reported(scripted, monkeypatch):
    monkeypatch.setenv("STELLA_RETRIES", "2")
    server = scripted([(503, {"Retry-After": "0"})] * 5)
    with StellaClient(server.url, "stl_test") as client, pytest.raises(CliError, match=r"^503 "):
        client.post("/releases", {})
    assert len(server.seen) == 3


def test_retries_can_be_turned_off(scripted, monkeypatch):
    monkeypatch.setenv("STELLA_RETRIES", "0")
    server = scripted([(503, {"Retry-After": "0"})])
    with StellaClient(server.url, "stl_test") as client, pytest.raises(CliError, match=r"^503"):
        client.get("/releases")
    assert len(server.seen) == 1


def test_a_client_error_is_not_retried(scripted, monkeypatch):
    monkeypatch.setenv("STELLA_RETRIES", "3")
    server = scripted([(409, {})])
    with StellaClient(server.url, "stl_test") as client, pytest.raises(CliError, match=r"^409"):
        client.post("/releases", {})
    assert len(server.seen) == 1


def test_a_bad_retries_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("STELLA_RETRIES", "lots")
    with pytest.raises(CliError, match="STELLA_RETRIES must be a whole number"):
        StellaClient("http://127.0.0.1:9", "stl_test")
