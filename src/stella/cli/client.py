"""HTTP client for the Stella API, turning every failure into one readable line."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

# A restarting server or a database fail-over answers 503 (with Retry-After) or refuses the
# connection for a moment: commands wait that out instead of failing a CI job. POSTs carry an
# Idempotency-Key, so a retry after a lost answer never makes a change twice.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_WAIT = 10.0  # seconds, whatever Retry-After asks


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def _default_token() -> str | None:
    token = os.environ.get("STELLA_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("STELLA_HOME", ".stella")) / "admin.token"
    try:
        return path.read_text().strip()
    except OSError:
        return None


def describe_problem(response: httpx.Response) -> str:
    """`422 components.api: tag v9 not found …` from a problem document (or the raw body)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200].strip() or response.reason_phrase}"
    if not isinstance(body, dict):
        return f"{response.status_code} {response.reason_phrase}"
    errors = body.get("errors") or []
    if errors:
        text = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
    else:
        text = str(body.get("detail") or body.get("title") or response.reason_phrase)
    return f"{response.status_code} {text}"


def _retries_setting() -> int:
    raw = os.environ.get("STELLA_RETRIES", "3")
    if not raw.isdigit() or int(raw) > 20:
        msg = f"STELLA_RETRIES must be a whole number from 0 to 20, not {raw!r}"
        raise CliError(msg)
    return int(raw)


def _retry_after(response: httpx.Response, default: float) -> float:
    raw = response.headers.get("retry-after", "")
    seconds = float(raw) if raw.isdigit() else default
    return min(seconds, MAX_RETRY_WAIT)


class StellaClient:
    """Thin wrapper over httpx with `STELLA_URL` / `STELLA_TOKEN` defaults."""

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 30
    ) -> None:
        self.url = (url or os.environ.get("STELLA_URL") or "http://127.0.0.1:8080").rstrip("/")
        token = token or _default_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = _retries_setting()
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StellaClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def text(self, path: str) -> str:
        """A non-JSON body (artifacts)."""
        return self.send("GET", path).text

    def _unreachable(self, exc: httpx.HTTPError) -> CliError:
        if isinstance(exc, httpx.ConnectError):
            return CliError(
                f"cannot reach Stella at {self.url} (is the server running? set STELLA_URL)"
            )
        return CliError(f"request to {self.url} failed: {type(exc).__name__}")

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response of a successful request; CliError with one readable line otherwise.
        Unreachable servers and 502/503/504 answers are retried `STELLA_RETRIES` times."""
        headers = dict(kwargs.pop("headers", None) or {})
        if method == "POST":
            headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise self._unreachable(exc) from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(_retry_after(response, 0.5 * 2**attempt))
                continue
            break
        if response.status_code == 401:
            msg = f"{describe_problem(response)} (set STELLA_TOKEN to a valid API token)"
            raise CliError(msg)
        if response.status_code >= 400:
            raise CliError(describe_problem(response))
        return response

    def download(self, path: str, destination: Any, **params: Any) -> int:
        """Stream a binary body into the open file `destination`; returns the byte count."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream("GET", path, params=query) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(describe_problem(response))
                written = 0
                for chunk in response.iter_bytes():
                    destination.write(chunk)
                    written += len(chunk)
                return written
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params or None)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def list_all(self, path: str, limit: int | None = None, **params: Any) -> list[Any]:
        """Follow `next_cursor` until the end, or until `limit` items were read."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(path, cursor=cursor, limit=min(limit or 500, 500), **params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(items) >= limit):
                return items[:limit] if limit else items
