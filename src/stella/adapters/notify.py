"""Outgoing webhook notifications, signed with HMAC-SHA256 so receivers can trust them.

The body is canonical JSON; `X-Stella-Signature: sha256=<hex>` is the HMAC of exactly those bytes
with the shared secret (resolved from its reference at send time, never stored or logged).
Delivery happens on a background thread with a short timeout: a slow receiver never holds up an
import or an upload; failures are logged without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from stella.domain.canonical import canonical_json

log = logging.getLogger(__name__)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        secret_ref: str | None,
        resolve_secret: Callable[[str], str],
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.secret_ref = secret_ref
        self.resolve_secret = resolve_secret
        self.timeout = timeout

    def __call__(self, payload: dict[str, Any]) -> None:
        thread = threading.Thread(target=self.send, args=(payload,), daemon=True)
        thread.start()

    def send(self, payload: dict[str, Any]) -> bool:
        body = canonical_json(payload)
        headers = {
            "Content-Type": "application/json",
            "X-Stella-Event": str(payload.get("event", "notification")),
        }
        try:
            if self.secret_ref:
                headers["X-Stella-Signature"] = signature(
                    self.resolve_secret(self.secret_ref), body
                )
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
            response.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - a notification must never break the caller
            log.warning(
                "webhook to %s failed: %s", self.url, type(exc).__name__, extra={"url": self.url}
            )
            return False
        return True
