"""Settings: the one place environment variables are read."""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fhir_server.core.web_origin import parse_origin_list


class Settings(BaseSettings):
    """Server configuration, from environment variables (docs/configuration.md is generated
    from these fields by tools/gen_config_docs.py)."""

    # hide_input_in_errors: an invalid value is not echoed (it can be a secret or a password).
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      hide_input_in_errors=True)

    fhir_host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    fhir_port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    fhir_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=64,
        description="Server processes sharing the port and the database.",
        json_schema_extra={"default_text": "the number of cores"})
    fhir_base_url: str | None = Field(
        default=None,
        description="Public base URL of the FHIR endpoint, used in absolute links "
        "(default http://FHIR_HOST:FHIR_PORT/fhir).",
    )
    mongodb_uri: str | None = Field(
        default=None, description="MongoDB connection string; unset serves from the embedded "
        "SQLite database FHIR_DATA_DIR/fhir.sqlite3.")
    mongodb_database: str = Field(default="fhir", description="Database name on MongoDB.")
    fhir_data_dir: Path = Field(
        default=Path("./var"), description="Where the embedded database keeps its file "
        "(fhir.sqlite3, with its -wal and -shm), the audit journal (audit-journal/), Bulk "
        "Data export files (bulk-export/) and, with FHIR_WORKERS > 1, the workers' metrics "
        "(metrics/)."
    )
    fhir_sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite's synchronous setting for the embedded database "
        "(WAL journal): NORMAL survives a crash of the process, FULL also a power loss, at the "
        "cost of a disk sync per commit.")
    fhir_ferretdb_bin: Path | None = Field(
        default=None, description="A prebuilt FerretDB launcher, for the tests' MongoDB "
        "stand-in and for moving data written by the embedded FerretDB of earlier versions "
        "(`fhir-server export --from-ferretdb`; default: tools/ferretdb/ferretdb-embedded, "
        "built with go).")
    fhir_referential_integrity: bool = Field(
        default=False,
        description="Reject writes whose relative references (Patient/123) point at resources "
        "not on this server; off by default, since data from other systems arrives in any order.",
    )
    fhir_default_count: int = Field(default=20, ge=1, description="Page size when _count is absent.")
    fhir_max_count: int = Field(default=1000, ge=1, description="Largest _count a client may ask for.")
    fhir_bundle_max_entries: int = Field(
        default=10_000, ge=1, description="Most entries a transaction or batch Bundle may have.")
    fhir_max_json_depth: int = Field(
        default=64, ge=8, le=100, description="Deepest nesting of objects and arrays accepted in "
        "a JSON body or resource (the top level is 1); deeper content answers 400. The deepest "
        "official R4 example is 21; above 100 the model validation could run out of stack.")
    fhir_max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body, bytes, for "
        "one resource, a PATCH, a search form or an operation's Parameters; also the largest "
        "HL7 v2 message (MLLP frame). Counted as the body arrives, with or without "
        "Content-Length: a larger one answers 413 before it is read whole. The default "
        "takes a resource with a document of 6 MB inline (base64 makes it 8 MB), ten times "
        "the largest official R4 example; larger documents belong behind Attachment.url.")
    fhir_max_bundle_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest body of a batch or "
        "transaction Bundle (POST to the base), bytes: a full FHIR_BUNDLE_MAX_ENTRIES "
        "(10,000) of resources of about 3 KB, or a patient's whole Synthea history. "
        "Parsing takes about five times the body's size in memory (a 32 MiB Bundle of "
        "Synthea resources: 180 MB at the peak): keep it well below a server process's "
        "memory limit divided by the requests it serves at once.")
    fhir_max_x12_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest X12 file, bytes: the body "
        "of PaymentReconciliation/$import-835 (X12 text, or Parameters with it), a file "
        "from a clearinghouse's outbox, a payer's answer. The default holds an 835 of "
        "about 10,000 claims. Inside Parameters as the string 'x12' an 835 is also held to "
        "FHIR_MAX_STRING_BYTES: send a larger one as the body or as the base64 'attachment'.")
    fhir_max_string_bytes: int = Field(
        default=1024 * 1024, ge=64, description="Longest string element of a JSON body or "
        "of a resource read from an EHR, UTF-8 bytes; a longer one answers 400 naming the "
        "element. FHIR R4 says strings SHALL NOT exceed 1 MB (the default). base64Binary "
        "elements (Binary.data, Attachment.data) are bounded by the body limits only.")
    fhir_search_max_results: int = Field(
        default=10_000, ge=1, description="Most matches one search keeps for paging (the "
        "total is still exact).")
    fhir_billing_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$",
        description="ISO 4217 currency of generated bills (ChargeItem, Invoice, Claim).")
    fhir_billing_provider: str | None = Field(
        default=None, pattern=r"^Organization/[A-Za-z0-9\-.]{1,64}$",
        description="The clinic's Organization (Organization/[id]), the provider of generated "
        "Claims when the Encounter names no serviceProvider. Without either, a patient who has "
        "Coverage in force cannot be billed (a Claim needs a provider): $generate-bill answers "
        "422, and a finished visit's bill waits on the worklist as a failed bill-visit Task.")
    fhir_hl7v2_port: int | None = Field(
        default=None, ge=1, le=65535, description="TCP port of the HL7 v2 MLLP listener "
        "(unset: no listener).")
    fhir_hl7v2_host: str = Field(default="127.0.0.1",
                                 description="Interface the HL7 v2 MLLP listener binds to.")
    fhir_ehr_page_size: int = Field(
        default=100, ge=1, le=1000, description="Resources asked for per page when syncing "
        "from an EHR (Endpoint/[id]/$sync).")
    fhir_ehr_sync_interval: float | None = Field(
        default=None, gt=0, description="Seconds between automatic syncs of the EHR Endpoints "
        "marked with the endpoint-ehr-sync extension (unset: only on request).")
    fhir_bill_on_finish: bool = Field(
        default=True, description="Bill a visit after its Encounter becomes finished, when it "
        "has billable ChargeItems (the billing worker, from the encounter-finished event, with "
        "the same code as Invoice/$generate-bill; what it cannot bill becomes a Task).")
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
    fhir_peer_allowed_hosts: str = Field(
        default="", description="Comma-separated peers (payers, clearinghouses, EHRs, the "
        "token URLs they publish, backend clients' JWKS URLs) this server may call although "
        "their address is loopback, private, link-local (cloud metadata), shared, multicast "
        "or reserved: a host name (any address it resolves to), an IP address or a CIDR "
        "network, each optionally with "
        ":port for that port only (IPv6 in brackets then: [fd00::5]:8443). Empty (the "
        "default): only globally routable addresses are called, so that an Endpoint.address "
        "cannot reach this machine's or the clinic network's own services.")
    fhir_x12_poll_interval: float = Field(
        default=0, ge=0, description="Seconds between polls of every clearinghouse Endpoint's "
        "outbox (277CA, 835) by the server; 0: the server does not poll (use "
        "`fhir-server x12 poll`).")
    fhir_claim_status_days: float = Field(
        default=21, ge=0, description="Days a claim sent over X12 may wait for its payer's "
        "answer (an 835) before the poll asks about it with a 276, and again every that many "
        "days while it waits; needs FHIR_X12_POLL_INTERVAL > 0 or `fhir-server x12 poll`.")
    fhir_log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING, ...).")
    fhir_log_format: Literal["text", "json"] = Field(
        default="text", description="text: key=value lines; json: one JSON object per line "
        "(time, level, logger, message, request_id, trace_id; route, status and duration_ms "
        "on request lines), for ELK-style log stores.")

    # -- operating it (fhir_server/observability/) ------------------------------------------
    fhir_metrics_allow: str = Field(
        default="127.0.0.1/32,::1/128", description="Comma-separated networks (CIDR) whose "
        "requests to /metrics need no token; from anywhere else /metrics needs a token with "
        "a system scope or the admin role. Empty: a token always.")
    fhir_lease_seconds: float = Field(
        default=15.0, ge=3.0, le=300.0, description="How long a lease (a booking's schedule, "
        "a bill, an 835, an HL7 v2 message, an EHR sync, the terminology load) outlives a "
        "holder that died or stopped: live holders renew theirs every third of it. Shorter "
        "frees a crashed process's work sooner; a holder whose process stalls for longer "
        "loses its lease (its writes are then refused, not made twice).")
    fhir_trusted_proxies: str = Field(
        default="", description="Comma-separated addresses or networks (CIDR) of the reverse "
        "proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: the client's "
        "address then comes from them (sign-in lockout, rate limits, AuditEvents, /metrics). "
        "Empty (the default): no proxy is trusted, the TCP peer is the client. '*' trusts "
        "every peer: only where nothing but the proxy can reach the port.")
    fhir_rate_limit_per_minute: int | None = Field(
        default=None, ge=1, description="Requests per minute each client (its token's client "
        "id; without a token, its network address) may make, per server process; beyond it "
        "429 with Retry-After (unset: no limit). /health, /ready and /metrics are never "
        "limited.")
    fhir_rate_limit_burst: int | None = Field(
        default=None, ge=1, description="Requests a client may make at once before the per-"
        "minute rate paces it (the token bucket's size; default: FHIR_RATE_LIMIT_PER_MINUTE).")
    fhir_shutdown_drain_seconds: float = Field(
        default=0, ge=0, le=300, description="On SIGTERM, seconds /ready answers 503 while "
        "requests are still served, so that a load balancer stops sending new ones before "
        "the listening socket closes (Kubernetes: a few readiness periods).")
    fhir_shutdown_grace_seconds: int = Field(
        default=30, ge=1, le=600, description="After the drain, how long in-flight requests "
        "may take to finish before they are cancelled; then the audit queue is flushed and "
        "the process exits 0.")
    prometheus_multiproc_dir: Path | None = Field(
        default=None, description="Set by `fhir-server serve` for its workers when "
        "FHIR_WORKERS > 1 (prometheus-client's multiprocess mode): FHIR_DATA_DIR/metrics, "
        "emptied at start, where every worker's metrics are kept, so that /metrics adds them "
        "up. Not set by hand.")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OpenTelemetry: the OTLP/HTTP collector traces are sent to "
        "(unset: no tracing; /v1/traces is added to it). The SDK's other standard OTEL_* "
        "variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...) apply.")
    fhir_auth: Literal["smart", "off"] = Field(
        default="smart", description="smart: SMART on FHIR authorization; off: no access control "
        "(local experiments only, logged loudly at start-up).")
    fhir_auth_login_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins for one username before it is locked "
        "for FHIR_AUTH_LOGIN_LOCKOUT_SECONDS (from one network address: four times as many); "
        "further sign-ins answer 429 until the lockout ends.")
    fhir_auth_login_lockout_seconds: int = Field(
        default=900, ge=1, description="How long failed sign-ins are counted, and a lock lasts.")
    fhir_auth_token_lifetime: int = Field(
        default=3600, ge=60, le=86_400, description="Lifetime of access and id tokens, seconds; "
        "also how long a rotated-out signing key still verifies.")
    fhir_auth_refresh_lifetime: int = Field(
        default=30 * 86_400, ge=60, description="Lifetime of a refresh token for offline_access, "
        "seconds (renewed at each use).")
    fhir_auth_online_refresh_lifetime: int = Field(
        default=12 * 3600, ge=60, description="Lifetime of a refresh token chain for online_access, "
        "seconds (not renewed).")
    fhir_auth_code_lifetime: int = Field(
        default=60, ge=5, le=600, description="Lifetime of an authorization code, seconds.")
    fhir_auth_signing_alg: Literal["RS256", "ES256", "ES384"] = Field(
        default="RS256", description="Algorithm of the signing keys generated for access and id tokens.")
    fhir_key_encryption_key: SecretStr | None = Field(
        default=None, description="32 random bytes in base64 (e.g. `openssl rand -base64 "
        "32`): the token signing keys kept in the database are stored sealed with it "
        "(AES-256-GCM), so that the database alone does not let anyone mint tokens. Every "
        "process of the deployment needs the same value; keys stored in the clear before are "
        "sealed at the next start (then run `fhir-server keys rotate`). Unused with "
        "FHIR_SIGNING_KEY_FILE.")
    fhir_signing_key_file: Path | None = Field(
        default=None, description="A PEM private key (RSA for RS256, EC P-256/P-384 for "
        "ES256/ES384, matching FHIR_AUTH_SIGNING_ALG) that signs access and id tokens, held "
        "outside the database; its kid is its RFC 7638 thumbprint. The file must be readable "
        "by the server's user alone (chmod 600) or the server does not start. Unset: keys "
        "generated and kept in the database (anyone who can read the database can mint "
        "tokens).")
    fhir_signing_key_verify_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Comma-separated PEM files (public or private "
        "keys) that verify tokens and are published in the JWKS but never sign: the previous "
        "FHIR_SIGNING_KEY_FILE after a rotation, until FHIR_AUTH_TOKEN_LIFETIME has passed; "
        "with several processes, the next key, before it signs anywhere.")
    fhir_auth_jwks_cache_seconds: int = Field(
        default=300, ge=0, description="How long a backend client's JWKS fetched from its URL is cached.")
    fhir_auth_revocation_poll_seconds: float = Field(
        default=5.0, ge=0, description="How often a server process reloads token revocations made by "
        "other processes (its own take effect at once).")
    # -- CORS for browser apps (fhir_server/api/cors.py) -----------------------------------
    fhir_cors_origins: str = Field(
        default="", description="Comma-separated web origins (scheme://host[:port]) that may "
        "call /fhir and /auth from a browser with the token of any client, beyond each "
        "registered client's own origins (its redirect URIs' origins and its --origin "
        "values), which may use only that client's tokens. Empty (the default): only the "
        "clients' own origins. '*' is refused: a token would then be usable from any page.")
    fhir_cors_max_age: int = Field(
        default=600, ge=0, le=86_400, description="Seconds a browser may cache a preflight "
        "answer (Access-Control-Max-Age; Chromium caps it at 7200, Firefox at 86400). "
        "Shorter: an origin whose client is removed stops working sooner; longer: fewer "
        "OPTIONS round trips.")
    fhir_cors_refresh_seconds: float = Field(
        default=5.0, ge=0, le=300, description="How often a server process re-reads the "
        "registered clients' origins (clients added by `fhir-server clients add` while it "
        "runs are allowed from then on); 0: at every cross-origin request.")

    fhir_audit_flush_seconds: float = Field(
        default=0.5, gt=0, le=60, description="How often queued AuditEvents are written, seconds.")
    fhir_audit_batch: int = Field(
        default=200, ge=1, description="Queued AuditEvents that trigger a write before the interval.")
    fhir_audit_journal: bool = Field(
        default=True, description="Also append queued AuditEvents to a journal under "
        "FHIR_DATA_DIR/audit-journal, so that a killed process's events are written at the "
        "next start.")
    fhir_audit_queue_max: int = Field(
        default=100_000, ge=100, description="Most AuditEvents kept queued while the database "
        "cannot take them; beyond it the oldest are dropped (and the loss logged).")

    # -- Bulk Data export (fhir_server/operations/bulk_export.py) --------------------------------------
    fhir_export_retention: int = Field(
        default=86_400, ge=1, le=30 * 86_400, description="How long a Bulk Data export job's "
        "files and status stay available, seconds from the job's end (while it runs: from its "
        "start; default one day: long "
        "enough for a nightly job to fetch its files, short enough that copies of health data "
        "do not pile up on disk); then they are deleted and the job's URLs answer 404.")

    # -- change events (fhir_server/events/) -----------------------------------------------------------
    fhir_events_retention: int = Field(
        default=7 * 86_400, ge=60, description="How long the outbox keeps a change event, "
        "seconds from its commit (default 7 days), and in any case until every active "
        "consumer (one that ran within this time) has passed it.")
    fhir_events_poll_seconds: float = Field(
        default=0.05, gt=0, le=60, description="How often an idle consumer of change events "
        "looks for new ones (a commit in another worker or replica is seen within this).")
    fhir_events_lease_seconds: float = Field(
        default=5.0, ge=1.0, le=300.0, description="How long a consumer's lease outlives a "
        "process that died holding it: another worker or replica takes the consumer over "
        "within this.")
    fhir_amqp_url: SecretStr | None = Field(
        default=None, description="A RabbitMQ broker (`amqp://user:password@host:5672/vhost`, "
        "or `amqps://`) to which every change event is published (docs/events.md); unset, "
        "none is. It may carry a password: the logs name its host and port only.")
    fhir_amqp_exchange: str = Field(
        default="fhir.events", min_length=1, max_length=255, description="The durable topic "
        "exchange the change events are published to (declared by the server if missing).")
    fhir_amqp_payload: Literal["event", "full"] = Field(
        default="event", description="What a message carries: `event`, the change's "
        "identifiers only (type, id, version, action, journey topics, instant), never health "
        "data; `full`, also the resource version's JSON (none for a deletion).")

    # -- Subscriptions (fhir_server/subscriptions/) --------------------------------------------------
    fhir_subscription_allowed_hosts: str = Field(
        default="", description="Comma-separated rest-hook receivers Subscriptions may notify "
        "over plain http, or although their address is loopback, private, link-local (cloud "
        "metadata), shared, multicast or reserved: a host name, an IP address or a CIDR "
        "network, each optionally with :port (as FHIR_PEER_ALLOWED_HOSTS). Empty (the "
        "default): https to globally routable addresses only.")
    fhir_subscription_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts to deliver one notification (the first "
        "and the retries, with exponential backoff and jitter) before the Subscription goes "
        "to status error with the reason; what it has not got stays readable by $events.")
    fhir_subscription_timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds one notification may take (connect "
        "and answer) before the attempt counts as failed; also bounds each SMTP exchange of a "
        "patient email notification.")
    fhir_subscription_backoff: float = Field(
        default=1.0, gt=0, le=600, description="Seconds of the first pause between two "
        "attempts of a notification; each later pause doubles it (at most 5 minutes), with "
        "full jitter.")
    fhir_smtp_url: SecretStr | None = Field(
        default=None, description="The SMTP server email Subscriptions are sent through: "
        "`smtp://user:password@host:port` (plain, or `?starttls=true` to upgrade to TLS), "
        "or `smtps://...` for implicit TLS; user and password URL-encoded, both optional. "
        "Unset (the default): email channels are refused. The password is never logged.")
    fhir_smtp_from: str = Field(
        default="", description="The From address of Subscription emails; empty: "
        "`fhir-server@<the host of FHIR_BASE_URL>`.")

    # -- patient notifications (fhir_server/notifications/) ------------------------------------------
    fhir_sms_url: str | None = Field(
        default=None, description="The SMS provider's messages URL (Twilio-shaped: a POST of "
        "the form fields To, From and Body, with basic auth) patient text messages are sent "
        "to. Unset (the default): no text messages. Its host must be allowed by "
        "FHIR_PEER_ALLOWED_HOSTS when it is loopback or private.")
    fhir_sms_user: str | None = Field(
        default=None, description="The user (account id) of the SMS provider's basic auth.")
    fhir_sms_token: SecretStr | None = Field(
        default=None, description="The password (auth token) of the SMS provider's basic "
        "auth; never logged.")
    fhir_sms_from: str = Field(
        default="", description="The sender number (or name) of patient text messages; "
        "text messages are off while it is empty.")
    fhir_notify_templates: Path | None = Field(
        default=None, description="A directory of Jinja2 templates (`<language>/<kind>.j2`) "
        "that override the packaged patient-notification templates, file by file.")
    fhir_clinic_timezone: str = Field(
        default="UTC", description="The clinic's IANA time zone (e.g. `America/Chicago`): "
        "appointment times in patient notifications are written in it.")
    fhir_reminder_hours: float = Field(
        default=24.0, gt=0, le=24 * 14, description="Hours before a booked appointment's "
        "start at which the patient is reminded of it (once per start time).")
    fhir_reminder_scan_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds between two scans for appointments "
        "due a reminder.")
    fhir_notify_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts at sending one patient notification on "
        "one channel before it is recorded as not done with a worklist Task.")
    fhir_notify_backoff: float = Field(
        default=1.0, gt=0, le=600, description="Seconds of the first pause between two "
        "attempts of a patient notification; each later pause doubles it (at most 5 "
        "minutes), with full jitter.")

    # -- terminology (fhir_server/terminology/) ------------------------------------------------------
    fhir_terminology_load: bool = Field(
        default=True, description="At start-up, load FHIR R4's code systems, value sets and "
        "concept maps and ICD-10-CM when they are missing or of an older release (the first "
        "start takes about a minute); off: only `fhir-server terminology load` loads them.")
    fhir_terminology_expansion_limit: int = Field(
        default=10_000, ge=1, description="Most codes $expand returns at once; a larger "
        "expansion asked for without count answers 400 (too-costly).")
    fhir_terminology_expansion_timeout: float = Field(
        default=5.0, gt=0, le=600, description="Seconds one value set expansion may spend "
        "in the concept store ($expand, ValueSet/$validate-code, the code set of a search's "
        ":in/:not-in); a longer one is stopped, having written nothing, and answers 422 "
        "(too-costly). On SQLite the query runs on the worker's event loop, so this is also "
        "the longest an expansion can hold up the worker's other requests.")
    fhir_terminology_regex_max_length: int = Field(
        default=256, ge=1, le=10_000, description="Longest regular expression a ValueSet "
        "regex filter may have (characters); a longer one answers 400. Patterns are RE2 "
        "syntax and matched in linear time whatever their length.")

    @field_validator("fhir_cors_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        return ",".join(parse_origin_list(value))

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """FHIR_CORS_ORIGINS, normalised (``origin_of``'s form)."""
        return parse_origin_list(self.fhir_cors_origins)

    @field_validator("fhir_clinic_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, e.g. America/Chicago") from None
        return value

    @field_validator("fhir_key_encryption_key")
    @classmethod
    def _thirty_two_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _kek_bytes(value.get_secret_value())
        return value

    @field_validator("fhir_amqp_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            amqp_address(value.get_secret_value())
        return value

    @property
    def key_encryption_key(self) -> bytes | None:
        """FHIR_KEY_ENCRYPTION_KEY's bytes."""
        secret = self.fhir_key_encryption_key
        return None if secret is None else _kek_bytes(secret.get_secret_value())

    @field_validator("fhir_signing_key_verify_files", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @property
    def base_url(self) -> str:
        if self.fhir_base_url:
            return self.fhir_base_url.rstrip("/")
        return f"http://{self.fhir_host}:{self.fhir_port}/fhir"

    @property
    def auth_base_url(self) -> str:
        """Where the authorization server's endpoints live: beside the FHIR base, under /auth."""
        base = self.base_url
        root = base[: -len("/fhir")] if base.endswith("/fhir") else base
        return f"{root}/auth"

    @property
    def patient_email_configured(self) -> bool:
        """Whether patient notifications go out by email (FHIR_SMTP_URL set; one that is
        not an SMTP URL still leaves the channel off: ``notifications/channels.py``)."""
        return bool(self.fhir_smtp_url)

    @property
    def patient_sms_configured(self) -> bool:
        """Whether patient notifications go out by SMS (FHIR_SMS_URL and FHIR_SMS_FROM)."""
        return bool(self.fhir_sms_url and self.fhir_sms_from)

    @property
    def notification_channels_configured(self) -> bool:
        """Whether any patient notification channel is configured (and so a notifications
        consumer runs, which resends a notify-patient Task set to ``requested``)."""
        return self.patient_email_configured or self.patient_sms_configured


def _kek_bytes(text: str) -> bytes:
    """A key-encryption key: 32 bytes in base64 (standard or URL-safe alphabet)."""
    text = text.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_"
                               if "-" in text or "_" in text else None, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be 32 bytes in base64") from None
    if len(raw) != 32:
        raise ValueError(f"must be 32 bytes in base64, not {len(raw)} bytes")
    return raw


def amqp_address(url: str) -> tuple[str, int]:
    """The broker's host and port in an AMQP URL: what may be said of it in a log (the URL
    itself may carry a password)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("must be an amqp:// or amqps:// URL") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError("must be an amqp:// or amqps:// URL with a host")
    return parts.hostname, port or (5671 if parts.scheme == "amqps" else 5672)


@lru_cache
def get_settings() -> Settings:
    return Settings()
