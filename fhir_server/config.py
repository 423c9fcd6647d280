"""Settings: the one place environment variables are read."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server configuration, from environment variables (see README)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    fhir_host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    fhir_port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    fhir_base_url: str | None = Field(
        default=None,
        description="Public base URL of the FHIR endpoint, used in absolute links "
        "(default http://FHIR_HOST:FHIR_PORT/fhir).",
    )
    mongodb_uri: str | None = Field(
        default=None, description="MongoDB connection string; unset starts the embedded FerretDB."
    )
    mongodb_database: str = Field(default="fhir", description="Database name.")
    fhir_data_dir: Path = Field(
        default=Path("./var"), description="Where the embedded database keeps its files."
    )
    fhir_ferretdb_bin: Path | None = Field(
        default=None, description="A prebuilt FerretDB launcher (default: tools/ferretdb, built "
        "with go when missing).")
    fhir_referential_integrity: bool = Field(
        default=False,
        description="Reject writes whose relative references point at resources not on this server.",
    )
    fhir_default_count: int = Field(default=20, ge=1, description="Page size when _count is absent.")
    fhir_max_count: int = Field(default=1000, ge=1, description="Largest _count a client may ask for.")
    fhir_bundle_max_entries: int = Field(
        default=10_000, ge=1, description="Most entries a transaction or batch Bundle may have.")
    fhir_search_max_results: int = Field(
        default=10_000, ge=1, description="Most matches one search keeps for paging.")
    fhir_billing_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$",
        description="ISO 4217 currency of generated bills (ChargeItem, Invoice, Claim).")
    fhir_billing_provider: str | None = Field(
        default=None, pattern=r"^Organization/[A-Za-z0-9\-.]{1,64}$",
        description="The clinic's Organization, the provider of generated Claims when the "
        "Encounter names no serviceProvider.")
    fhir_payer_connect_timeout: float = Field(
        default=2.0, gt=0, description="Seconds to connect to a payer endpoint.")
    fhir_payer_read_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a payer's answer.")
    fhir_payer_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed payer call (idempotent calls, "
        "and calls that never reached the payer).")
    fhir_payer_breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a payer endpoint's circuit.")
    fhir_payer_breaker_reset: float = Field(
        default=30.0, gt=0, description="Seconds an open circuit waits before one trial call.")
    fhir_client_key_file: Path | None = Field(
        default=None, description="A private JWK (RS384 or ES384, with kid) this server signs "
        "client assertions with when it calls payers that require OAuth (private_key_jwt).")
    fhir_log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING, ...).")

    @property
    def base_url(self) -> str:
        if self.fhir_base_url:
            return self.fhir_base_url.rstrip("/")
        return f"http://{self.fhir_host}:{self.fhir_port}/fhir"


@lru_cache
def get_settings() -> Settings:
    return Settings()
