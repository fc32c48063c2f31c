"""Typed gateway configuration, loaded once from one YAML file.

Validation errors name the offending key (e.g. `backends.0.replicas`). Secrets never need to live
in the file: any string may be written as `${ENV_NAME}` and is taken from the environment. A relative
artifact path (a router, a switcher) is taken from the working directory where it exists there, else from
the config file's directory or the nearest of its parents that holds it (`resolve_artifact`).
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, ValidationError, model_validator

from service.strategies.configs import StrategyConfig
from service.strategies.lookahead import LookaheadConfig
from service.strategies.thinking import ThinkingConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The config fields that name an artifact directory, by the class that holds them.
_ARTIFACT_FIELDS: dict[type[BaseModel], str] = {LookaheadConfig: "router", ThinkingConfig: "switcher"}


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    connect_s: float = Field(2.0, gt=0, description="TCP connect timeout to a replica.")
    first_byte_s: float = Field(
        60.0, gt=0, description="Time allowed until the response headers, and between two chunks of a stream.")
    total_s: float = Field(600.0, gt=0, description="Limit on one attempt's whole answer, streaming included "
                         "(a timed-out attempt is retried on another replica while nothing was sent, unless "
                         "its replica was seen generating since the send, lately, with no queue, at a pace at "
                         "which its token budget needs at least a quarter of this limit, or an unmeasured one: "
                         "then the answer is too long, a 504; README Dispatch).")


class Backend(_Strict):
    """One backend model served by one or more vLLM replicas."""

    name: str = Field(pattern=r"^[A-Za-z0-9._:/-]+$")
    model: str = Field(description="The model name the replicas serve (vLLM --served-model-name).")
    replicas: list[HttpUrl] = Field(min_length=1)
    # Printable ASCII without spaces: it goes into a header line as written (a secret file's trailing newline
    # would end the request head early).
    api_key: str | None = Field(None, pattern=r"^[\x21-\x7e]+$", description="Sent as `Bearer` to the replicas.")
    timeouts: Timeouts = Timeouts()
    discovery: Literal["none", "dns"] = Field(
        "none", description="`dns`: every address a replica URL's host resolves to is a replica of its own (a "
        "Kubernetes headless Service), looked up again every `discovery_interval_s`.")
    discovery_interval_s: float = Field(10.0, gt=0, description="How often `dns` discovery looks the hosts up.")

    @model_validator(mode="after")
    def _discovery_over_plain_http(self) -> Backend:
        if self.discovery == "dns" and any(url.scheme == "https" for url in self.replicas):
            raise ValueError("discovery: dns needs http replica URLs: TLS would check each pod's certificate "
                             "against its address, not the name")
        return self


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_tokens_limit: int = Field(32_768, gt=0)
    max_n: int = Field(8, gt=0)
    max_head_bytes: int = Field(65_536, gt=0, description="Largest request line plus headers; more gets 431.")
    head_timeout_s: float = Field(10.0, gt=0, description="Time a client has to send a request head; then 408.")
    body_timeout_s: float = Field(30.0, gt=0, description="Time a client has to send a request body; then 408.")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="On SIGTERM, time the requests under way (streams too) get to finish.")
    max_concurrent_requests: int = Field(4096, gt=0, description="Requests served at once (streams too); "
                                         "more are answered 503 gateway_overloaded.")
    max_concurrent_body_bytes: int = Field(134_217_728, gt=0, description="Bytes of request bodies held at "
                                           "once, from their arrival (parsed, a body takes a few times its "
                                           "size); more are answered 503 gateway_overloaded.")

    @model_validator(mode="after")
    def _one_body_fits(self) -> ServerSettings:
        if self.max_concurrent_body_bytes < self.max_body_bytes:
            raise ValueError("max_concurrent_body_bytes must be at least max_body_bytes, or a body of the "
                             "largest size could never be served")
        return self


class AuthSettings(_Strict):
    """API keys stored hashed: `sha256:<hex>` of the key. Empty list: no authentication."""

    api_key_hashes: list[str] = []
    public_paths: list[str] = ["/health", "/ready", "/metrics"]

    @model_validator(mode="after")
    def _hashes_are_sha256(self) -> AuthSettings:
        for key_hash in self.api_key_hashes:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", key_hash):
                raise ValueError("api_key_hashes entries must look like 'sha256:<64 hex digits>'")
        return self


class DispatchSettings(_Strict):
    health_interval_s: float = Field(2.0, gt=0, description="Active /health polling period per replica.")
    health_timeout_s: float = Field(1.0, gt=0, description="A health check slower than this fails.")
    health_failures: int = Field(2, ge=1, description="Failed checks in a row that mark a replica unhealthy "
                                                      "(a refused connection marks it at once).")
    scrape_interval_s: float = Field(0.5, gt=0, description="/metrics scraping period per replica.")
    saturation_queue: int = Field(32, ge=0, description="Waiting requests at which a replica is saturated.")
    retries: int = Field(2, ge=0, description="Extra attempts on other replicas before anything is sent.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that eject a replica.")
    breaker_cooldown_s: float = Field(10.0, gt=0, description="Ejection time before health checks may readmit.")
    max_response_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest buffered (not streamed) answer "
                                    "the gateway takes from a backend; a larger one is a 502 (answer_too_large).")


class CacheSettings(_Strict):
    redis_url: str | None = Field(None, description="redis://, rediss:// (TLS) or unix://; unset: in-process.")
    redis_password: str | None = Field(None, description="Used where the URL has none; any characters (a "
                                       "password inside the URL must be URL-encoded).")
    ttl_s: int = Field(3600, gt=0)
    max_entries: int = Field(100_000, gt=0, description="Size of the in-process LRU used without Redis.")
    timeout_s: float = Field(0.05, gt=0, description="Redis calls slower than this fail open.")
    retry_after_s: float = Field(1.0, ge=0, description="After a Redis failure, decide without it this long.")

    @model_validator(mode="after")
    def _redis_url_parses(self) -> CacheSettings:
        if self.redis_url is not None:
            from redis.asyncio.connection import parse_url

            try:
                parse_url(self.redis_url)
            except ValueError as error:  # the message never holds the URL, so no password is shown
                raise ValueError(f"redis_url: {error}") from None
        return self


class PublicModel(_Strict):
    """A model name clients ask for, served by a strategy over backend models."""

    name: str = Field(pattern=r"^[A-Za-z0-9._/-]+$")
    strategy: StrategyConfig


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    dispatch: DispatchSettings = DispatchSettings()
    cache: CacheSettings = CacheSettings()
    backends: list[Backend] = Field(min_length=1)
    models: list[PublicModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        # Each message starts with the key it is about (`_format_errors` shows it as such).
        names = [b.name for b in self.backends]
        if repeated := _repeated(names):
            raise ValueError(f"backends: names must be unique; {', '.join(map(repr, repeated))} repeat")
        if repeated := _repeated([m.name for m in self.models]):
            raise ValueError(f"models: public model names must be unique; {', '.join(map(repr, repeated))} repeat")
        for i, model in enumerate(self.models):
            for backend in model.strategy.backend_names():
                if backend not in names:
                    raise ValueError(f"models.{i}.strategy ({model.name!r}): unknown backend {backend!r}; the "
                                     f"backends are {', '.join(map(repr, names))}")
        return self

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)


def _repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, count in collections.Counter(names).items() if count > 1)


def hash_api_key(key: str) -> str:
    """The form in which an API key is stored in the config."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _expand_env(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str):
        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(lookup, node)
    return node


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        # A tagged union adds its tag to the path (strategy.lookahead.router): drop it.
        for i in range(len(loc) - 1, 0, -1):
            if loc[i - 1] == "strategy" and isinstance(loc[i], str) and i + 1 < len(loc):
                del loc[i]
        message = item["msg"]
        if not loc:  # a check across sections: its message names the key
            lines.append(f"  {message.removeprefix('Value error, ')}")
            continue
        lines.append(f"  {'.'.join(str(p) for p in loc)}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def parse_settings(raw: Any) -> Settings:
    """Validate an already-parsed config mapping, its `${NAME}` references expanded first."""
    return _validated(_expand_env(raw))


def _validated(expanded: Any) -> Settings:
    try:
        return TypeAdapter(Settings).validate_python(expanded)
    except ValidationError as error:
        raise ConfigError(_format_errors(error)) from None


def load_settings(path: str | Path) -> Settings:
    """Read, expand and validate a YAML config file; `SWITCHYARD_REDIS_URL` overrides `cache.redis_url`."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    expanded = _expand_env(raw)
    redis_url = os.environ.get("SWITCHYARD_REDIS_URL")
    if redis_url:  # taken as it is: a `${...}` in it is not expanded again
        cache = expanded.get("cache")
        expanded["cache"] = {**(cache if isinstance(cache, dict) else {}), "redis_url": redis_url}
    config_dir = Path(path).resolve().parent
    return _map_artifacts(_validated(expanded), "", lambda key, value: resolve_artifact(value, config_dir))


def resolve_artifact(path: str, config_dir: Path) -> str:
    """A relative artifact path missing from the working directory, taken from `config_dir` or the nearest
    parent of it that holds it; any other path as written. So a config finds its artifacts whether they are
    written relative to its own directory or to the repository root, from any working directory."""
    relative = Path(path)
    if relative.is_absolute() or relative.exists():
        return path
    for base in (config_dir, *config_dir.parents):
        if (base / relative).exists():
            return str(base / relative)
    return path


def artifact_paths(settings: Settings) -> list[tuple[str, str]]:
    """(key, path) of every artifact the config names, e.g. ("models.2.strategy.router", "artifacts/r")."""
    found: list[tuple[str, str]] = []

    def collect(key: str, value: str) -> str:
        found.append((key, value))
        return value

    _map_artifacts(settings, "", collect)
    return found


def _map_artifacts(node: Any, key: str, change: Callable[[str, str], str]) -> Any:
    """`node` with every artifact path replaced by `change(key, path)`; unchanged parts are kept as they are."""
    if isinstance(node, list):
        items = [_map_artifacts(item, f"{key}.{i}", change) for i, item in enumerate(node)]
        return items if any(new is not old for new, old in zip(items, node, strict=True)) else node
    if not isinstance(node, BaseModel):
        return node
    update: dict[str, Any] = {}
    for name in type(node).model_fields:
        value, where = getattr(node, name), f"{key}.{name}" if key else name
        new = change(where, value) if _ARTIFACT_FIELDS.get(type(node)) == name else _map_artifacts(value, where,
                                                                                                    change)
        if new is not value:
            update[name] = new
    return node.model_copy(update=update) if update else node

