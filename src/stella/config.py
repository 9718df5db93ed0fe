"""Process configuration from `STELLA_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stella.domain.errors import ConfigurationError


class Settings(BaseSettings):
    """Everything a Stella process reads from its environment. See docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="STELLA_", extra="ignore")

    home: Path = Field(default=Path(".stella"), description="State folder")
    database_url: str | None = Field(default=None, description="sqlite:///… or postgresql://…")
    listen: str = Field(default="127.0.0.1:8080", description="host:port the API binds to")
    signing_key_dir: Path | None = Field(
        default=None, description="Signing keys (default HOME/keys)"
    )
    data_dir: Path | None = Field(default=None, description="Artifacts (default HOME/data)")
    log_level: str = Field(default="info")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body")
    registry_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    auth_failures_per_minute: int = Field(
        default=60, ge=1, le=100_000, description="failed token checks per client per minute"
    )
    embedded_worker: bool = Field(default=True, description="stella server runs a worker")
    worker_concurrency: int = Field(default=4, ge=1, le=64, description="steps run at once")
    worker_lease_seconds: float = Field(default=30.0, ge=0.5, le=3600)
    worker_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    worker_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    work_dir: Path | None = Field(default=None, description="script steps' folders (HOME/work)")
    agent_listen: str = Field(
        default="127.0.0.1:8443", description="host:port of the mutual-TLS agent listener"
    )
    agent_url: str | None = Field(
        default=None, description="URL agents reach the agent listener at (https://AGENT_LISTEN)"
    )
    agent_heartbeat_seconds: float = Field(
        default=30.0, ge=0.2, le=3600, description="agents heartbeat this often; 3 missed = offline"
    )
    agent_cert_days: int = Field(
        default=30, ge=1, le=3650, description="agent certificate validity"
    )
    drift_interval_seconds: float = Field(
        default=300.0, ge=1, le=86_400, description="how often workers check targets for drift"
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="private Ed25519 signing key (default SIGNING_KEY_DIR/decision-ed25519.pem)",
    )
    audit_checkpoint_seconds: float = Field(
        default=600.0, ge=1, le=86_400, description="how often workers sign an audit checkpoint"
    )
    security_webhook_url: str | None = Field(
        default=None, description="URL told about changed security verdicts (HMAC-signed POST)"
    )
    security_webhook_secret: str | None = Field(
        default=None, description="secret reference (env:NAME, file:/path) of the HMAC key"
    )
    attachment_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description="largest SBOM, VEX, scan or attestation accepted",
    )

    @field_validator("listen", "agent_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"'{value}' is not host:port (e.g. 127.0.0.1:8080)"
            raise ValueError(msg)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            msg = "must start with sqlite:/// or postgresql://"
            raise ValueError(msg)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            msg = "must be debug, info, warning or error"
            raise ValueError(msg)
        return value.lower()

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: default SQLite under HOME; libpq URLs mapped to psycopg 3."""
        url = self.database_url or f"sqlite:///{(self.home / 'stella.db').resolve()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def resolved_agent_url(self) -> str:
        return self.agent_url or f"https://{self.agent_listen}"

    @property
    def agent_listen_host(self) -> str:
        return self.agent_listen.rpartition(":")[0].strip("[]")

    @property
    def agent_listen_port(self) -> int:
        return int(self.agent_listen.rpartition(":")[2])

    @property
    def keys_dir(self) -> Path:
        return self.signing_key_dir or self.home / "keys"

    @property
    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or self.keys_dir / "decision-ed25519.pem"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def step_work_dir(self) -> Path:
        return (self.work_dir or self.home / "work").resolve()

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"


def load_settings() -> Settings:
    """Read the environment; raise ConfigurationError with one readable line when it is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "STELLA_" + str(first["loc"][0]).upper() if first["loc"] else "STELLA_*"
        msg = f"invalid configuration: {name}: {first['msg'].removeprefix('Value error, ')}"
        raise ConfigurationError(msg) from None
