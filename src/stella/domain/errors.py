"""The one error tree of Stella. Entry points map each class to its HTTP status / CLI exit.

StellaError
├── ValidationFailed      422  input breaks a rule; carries every FieldError found
├── MalformedRequest      400  a payload that is not the expected envelope at all
├── NotFound              404  unknown id, or an id of another tenant (existence never leaks)
├── Conflict              409  duplicates and illegal state transitions
├── ImmutableResource     405  an attempt to change something that never changes (releases)
├── Unauthenticated       401  missing, unknown or revoked credentials
├── PermissionDenied      403  authenticated, but the role may not do this
├── PayloadTooLarge       413  body over the configured limit
├── TransientError             may succeed when retried; the worker retries only these
│   ├── UpstreamUnavailable  502  a registry or other upstream failed or is unreachable
│   └── StorageUnavailable   503  the database cannot be reached
└── TerminalError              retrying cannot help
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field; `field` is a dotted path such as `components.api`."""

    field: str
    message: str


class StellaError(Exception):
    """Root of every error Stella raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class ValidationFailed(StellaError):
    """Raised when input is well-formed but breaks a rule (bad SemVer, unknown component...)."""

    status = 422
    title = "Invalid input"

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", [FieldError(field, message)])

    @classmethod
    def of(cls, errors: list[FieldError]) -> ValidationFailed:
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return cls(detail, errors)


class MalformedRequest(StellaError):
    """Raised when a payload is not the envelope expected at all (e.g. a broken webhook body)."""

    status = 400
    title = "Malformed request"


class NotFound(StellaError):
    """Raised for unknown ids and for ids that belong to another tenant."""

    status = 404
    title = "Not found"


class Conflict(StellaError):
    """Raised for duplicates and for state transitions the state machine forbids."""

    status = 409
    title = "Conflict"


class ImmutableResource(StellaError):
    """Raised when a client tries to modify a resource that is immutable by design."""

    status = 405
    title = "Immutable resource"


class Unauthenticated(StellaError):
    """Raised when credentials are missing, unknown or revoked."""

    status = 401
    title = "Unauthenticated"


class PermissionDenied(StellaError):
    """Raised when an authenticated principal's role does not allow the action."""

    status = 403
    title = "Forbidden"


class PayloadTooLarge(StellaError):
    """Raised when a request body exceeds the configured maximum."""

    status = 413
    title = "Payload too large"


class TransientError(StellaError):
    """Base for failures that may go away on retry."""


class TerminalError(StellaError):
    """Base for failures that a retry cannot fix."""


class UpstreamUnavailable(TransientError):
    """Raised when a registry or another upstream service fails or cannot be reached."""

    status = 502
    title = "Upstream unavailable"


class StorageUnavailable(TransientError):
    """Raised when the database cannot be reached."""

    status = 503
    title = "Storage unavailable"


class ImageNotFound(StellaError):
    """Raised by registry connectors when a tag or digest does not exist in the registry."""

    status = 422
    title = "Image not found"


class ConfigurationError(TerminalError):
    """Raised at start-up for invalid configuration; one line naming the variable."""

    title = "Invalid configuration"


class RateLimited(StellaError):
    """Raised when one client failed authentication too often; `retry_after` is in seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
