"""Configuration: a TOML file, validated strictly, and the objects built from it.

The file is found from an explicit path, then ``$GREENROUTE_CONFIG``, then ``./greenroute.toml``.
With none of those, greenroute runs on the five pre-registered profiles and the embedded data.

Every error names the file, the key and what was expected, and an unknown key suggests the
likely intended one. Secrets are read only from the environment variables the file names
(``username_env``, ``api_key_env``); a secret written in the file itself is refused.

Example:
    >>> cfg = load_config(None)            # no file: the pre-registered profiles
    >>> [b.id for b in cfg.backends][:2]
    ['aws-us-west-2', 'aws-eu-north-1']
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from .carbon import DEFAULT_REPLICATION, CarbonModel
from .embedded import embedded_data
from .errors import ConfigError, UnknownRegionError
from .model import Backend, GridDataSource, Objective, Provider, SignalKind
from .placement import GreenPlacementService, PlacementPolicy
from .plugins import load_entry_point
from .ports import GridKey, GridSource, SharedGridCache, SharedGridClaim, SharedGridEntry
from .profiles import FLEET_PUE, PROFILES, default_backends, profile_for
from .scoring import ScoreWeights
from .signals import GridSignals, ManualGridSource

__all__ = [
    "ENV_CONFIG",
    "CacheSettings",
    "GreenrouteConfig",
    "PlacementSettings",
    "RateBudget",
    "SourceSettings",
    "find_config",
    "load_config",
]

ENV_CONFIG = "GREENROUTE_CONFIG"
DEFAULT_FILE = "greenroute.toml"
#: The catalog of a config with ``[[backends]]`` and no ``[catalog] url``.
DEFAULT_CATALOG = "sqlite:///.greenroute/catalog.db"
#: The catalog with no config, or no ``[[backends]]``: in memory, like the built-in backends, so that
#: nothing outlives the objects it describes.
MEMORY_CATALOG = "sqlite://"
GRID_SOURCE_ENTRY_POINTS = "greenroute.grid_sources"
CACHE_ENTRY_POINTS = "greenroute.caches"

KNOWN_SOURCES = tuple(s.value for s in GridDataSource)
_SECRET_KEYS = frozenset({"password", "username", "api_key", "token", "auth_token", "key", "secret"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PlacementSettings:
    """The ``[placement]`` table."""

    signal: SignalKind = SignalKind.AVERAGE
    sources: tuple[str, ...] = ("watttime", "electricitymaps", "embedded")
    objective: Objective = Objective.SCORE
    cache_ttl_seconds: float = 300.0
    max_staleness_seconds: float = 24 * 3600.0
    time_budget_ms: float = 250.0
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    policy: PlacementPolicy = field(default_factory=PlacementPolicy)
    audit_log: str | None = None


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One ``[sources.NAME]`` table. ``options`` holds every key other than the env-var names."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def env(self, key: str, default_var: str | None = None) -> str | None:
        """The value of the environment variable that option ``key`` names (or ``default_var``).

        Returns ``None`` when the variable is unset or empty.
        """
        var = self.options.get(key, default_var)
        return (os.environ.get(var) or None) if isinstance(var, str) else None


@dataclass(frozen=True, slots=True)
class RateBudget:
    """A fleet-wide limit on one source's upstream calls: at most ``calls`` in any ``window_seconds``.

    ``calls = 0`` means no limit.
    """

    calls: int
    window_seconds: float

    def __str__(self) -> str:
        return f"{self.calls} calls per {self.window_seconds:g} s"


#: WattTime allows 3,000 data calls per 5 minutes per account.
DEFAULT_BUDGETS: Mapping[str, RateBudget] = MappingProxyType({"watttime": RateBudget(3000, 300.0)})


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The ``[cache]`` table: grid values shared by a fleet through Redis or Valkey.

    Attributes:
        url: ``redis://host:port/db``, ``rediss://...`` or ``unix:///path?db=N``; ``None`` (the
            default) keeps every cache in its own process. Never with a password in it.
        key_prefix: Every key greenroute writes starts with it. Defaults to ``"greenroute:"``.
        timeout_ms: Connect and per-command timeout. Defaults to 50 ms, so a slow or dead server
            costs a decision at most that before it falls back to the per-process cache.
        local_ttl_seconds: How long a process reuses a value it read before reading again.
            Defaults to 1 s (never more than ``placement.cache_ttl_seconds``).
        lock_seconds: How long one process's claim to fetch a value lasts if it never finishes.
            Defaults to 10 s.
        retry_seconds: After a failure, how long to use only the per-process cache. Defaults to 1 s.
        username_env: The environment variable holding the username (ACL), if any.
        password_env: The environment variable holding the password, if any.
        budgets: Each source's fleet-wide rate budget. Defaults to 3,000 calls per 300 s for
            WattTime and none for the others.
    """

    url: str | None = None
    key_prefix: str = "greenroute:"
    timeout_ms: float = 50.0
    local_ttl_seconds: float = 1.0
    lock_seconds: float = 10.0
    retry_seconds: float = 1.0
    username_env: str | None = None
    password_env: str | None = None
    budgets: Mapping[str, RateBudget] = field(default_factory=lambda: DEFAULT_BUDGETS)

    def env(self, key: str) -> str | None:
        """The value of the environment variable that ``username_env`` or ``password_env`` names."""
        var = self.username_env if key == "username_env" else self.password_env if key == "password_env" else None
        return (os.environ.get(var) or None) if var else None


@dataclass(frozen=True, slots=True)
class GreenrouteConfig:
    """A validated configuration. Build the runtime objects with :meth:`build_service`."""

    path: str | None
    placement: PlacementSettings
    sources: Mapping[str, SourceSettings]
    carbon_model: CarbonModel
    catalog_url: str
    backends: tuple[Backend, ...]
    on_overwrite: str = "keep"
    failover_cooldown_seconds: float = 30.0
    cache: CacheSettings = field(default_factory=CacheSettings)
    #: ``[rebalance] default_horizon_days``: how long an object without a declared retention is
    #: expected to stay, for the rebalance break-even test. Defaults to 365 days.
    rebalance_default_horizon_days: float = 365.0
    #: ``[report] baseline``: the backend every write's carbon is compared with, at decision time.
    #: Defaults to the first configured backend (see :attr:`baseline`).
    report_baseline: str | None = None

    @property
    def baseline(self) -> str | None:
        """The baseline backend's id: ``[report] baseline``, else the first configured backend."""
        return self.report_baseline or (self.backends[0].id if self.backends else None)

    def build_sources(self) -> list[GridSource]:
        """The configured grid sources in ``placement.sources`` order (embedded excluded).

        Live sources come from the ``greenroute.grid_sources`` entry points, loaded only now, so
        importing greenroute never imports an HTTP client. A source whose adapter is not
        installed is kept as an unavailable source, so decisions record why it was skipped.
        """
        built: list[GridSource] = []
        for name in self.placement.sources:
            settings = self.sources.get(name, SourceSettings(name))
            if name == GridDataSource.EMBEDDED.value:
                continue
            if name == GridDataSource.MANUAL.value:
                built.append(_manual_source(settings, self.path))
                continue
            try:
                factory = _grid_source_factory(name)
            except ImportError as exc:
                built.append(UnavailableSource(name, _signal_of(name), f"adapter failed to import ({exc})"))
                continue
            if factory is None:
                built.append(UnavailableSource(name, _signal_of(name), "adapter not installed"))
            else:
                built.append(factory(settings, self.placement))
        return built

    def build_signals(self) -> GridSignals:
        """The grid-signal chain this config describes."""
        p = self.placement
        return GridSignals(self.build_sources(), signal=p.signal, cache_ttl_seconds=p.cache_ttl_seconds,
                           max_staleness_seconds=p.max_staleness_seconds,
                           time_budget_seconds=p.time_budget_ms / 1000.0,
                           shared_cache=self.build_cache(),
                           local_ttl_seconds=self.cache.local_ttl_seconds,
                           shared_retry_seconds=self.cache.retry_seconds)

    def build_cache(self) -> SharedGridCache | None:
        """The shared grid cache ``[cache] url`` names, or ``None`` when there is none.

        The adapter comes from the ``greenroute.caches`` entry point of the URL's scheme, loaded only
        now. One that is not installed gives a cache that always fails with that reason, so every
        decision says why it used the per-process cache.
        """
        url = self.cache.url
        if url is None:
            return None
        scheme = url.split(":", 1)[0]
        try:
            factory: Callable[[CacheSettings], SharedGridCache] | None = load_entry_point(CACHE_ENTRY_POINTS, scheme)
        except ImportError as exc:
            return UnavailableCache(scheme, f"adapter failed to import ({exc}); install greenroute[redis]")
        if factory is None:
            return UnavailableCache(scheme, "adapter not installed; install greenroute[redis]")
        return factory(self.cache)

    def build_service(self) -> GreenPlacementService:
        """A placement service over this config's backends, sources and rules."""
        from .events import PLACEMENT_DECISION, AuditLogSink, EventBus
        from .health import BackendHealth
        from .scoring import BackendGreenScoreRegistry

        bus = EventBus()
        if self.placement.audit_log:
            bus.subscribe(PLACEMENT_DECISION, AuditLogSink(self.placement.audit_log))
        return GreenPlacementService(
            self.backends,
            registry=BackendGreenScoreRegistry(self.placement.weights),
            signals=self.build_signals(),
            carbon_model=self.carbon_model,
            policy=self.placement.policy,
            objective=self.placement.objective,
            bus=bus,
            health=BackendHealth(self.failover_cooldown_seconds),
        )


class UnavailableSource:
    """A configured source that cannot answer (adapter missing); it says why."""

    def __init__(self, name: str, signal: SignalKind, reason: str) -> None:
        self.name = name
        self.signal = signal
        self.unavailable_reason = reason

    def is_available(self) -> bool:
        """Always false."""
        return False

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> Any:
        """Never answers."""
        from .errors import GridDataUnavailableError

        raise GridDataUnavailableError(f"{self.name}: {self.unavailable_reason}", source=self.name, region=region)


class UnavailableCache:
    """A configured shared cache that cannot be used (adapter missing): every call says why."""

    def __init__(self, scheme: str, reason: str) -> None:
        self.description = scheme
        self.reason = reason

    def read(self, keys: Sequence[GridKey]) -> list[SharedGridEntry]:
        """Always fails."""
        raise ConnectionError(self.reason)

    def claim(self, keys: Sequence[GridKey], *, force: Sequence[bool] = ()) -> list[SharedGridClaim]:
        """Always fails."""
        raise ConnectionError(self.reason)

    def store(self, key: GridKey, value: Any, token: str, *, ttl_seconds: float, keep_seconds: float) -> bool:
        """Always fails."""
        raise ConnectionError(self.reason)

    def fail(self, key: GridKey, token: str, reason: str, *, backoff_seconds: float) -> None:
        """Always fails."""
        raise ConnectionError(self.reason)

    def close(self) -> None:
        """Nothing to close."""


def find_config(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: ``path``, else ``$GREENROUTE_CONFIG``, else ``./greenroute.toml``.

    Raises:
        ConfigError: An explicitly named file (argument or environment) does not exist.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config file not found", path=str(p))
        return p
    env = os.environ.get(ENV_CONFIG)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"config file named by ${ENV_CONFIG} not found", path=str(p))
        return p
    p = Path(DEFAULT_FILE)
    return p if p.is_file() else None


def load_config(path: str | os.PathLike[str] | None = None) -> GreenrouteConfig:
    """Find, read and validate the configuration (see :func:`find_config`).

    Raises:
        ConfigError: The file is unreadable or invalid; the message names file, key and expectation.
    """
    found = find_config(path)
    if found is None:
        return _defaults()
    where = str(found)
    try:
        raw = tomllib.loads(found.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", path=where) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file ({exc})", path=where) from exc
    return parse_config(raw, path=where)


def parse_config(raw: Mapping[str, Any], *, path: str | None = None) -> GreenrouteConfig:
    """Validate an already-parsed TOML document."""
    r = _Reader(path)
    r.keys(raw, "", {"placement", "sources", "carbon", "catalog", "router", "backends", "cache", "rebalance",
                    "report"})
    placement = _placement(r, r.table(raw, "placement"))
    sources = _sources(r, r.table(raw, "sources"), placement)
    carbon = _carbon(r, r.table(raw, "carbon"))
    cache = _cache(r, r.table(raw, "cache"), placement)
    catalog = r.table(raw, "catalog")
    _catalog_keys(r, catalog)
    # With the built-in in-memory backends, a catalog file would outlive the objects it names.
    default_catalog = MEMORY_CATALOG if raw.get("backends") is None else DEFAULT_CATALOG
    catalog_url = r.get(catalog, "catalog.url", str, default_catalog)
    catalog_url = _catalog_url(r, catalog, catalog_url)
    router = r.table(raw, "router")
    r.keys(router, "router", {"on_overwrite", "failover_cooldown_seconds"})
    on_overwrite = r.choice(router, "router.on_overwrite", ["keep", "replace"], "keep")
    cooldown = r.number(router, "router.failover_cooldown_seconds", 30.0, minimum=0.0)
    rebalance = r.table(raw, "rebalance")
    r.keys(rebalance, "rebalance", {"default_horizon_days"})
    horizon = r.number(rebalance, "rebalance.default_horizon_days", 365.0, minimum=0.0)
    backends_raw = raw.get("backends")
    if backends_raw is None:
        backends = tuple(default_backends())
    else:
        if not isinstance(backends_raw, list) or not all(isinstance(b, dict) for b in backends_raw):
            raise r.error("backends", "expected an array of tables ([[backends]])", backends_raw)
        backends = tuple(_backend(r, b, f"backends[{i}]") for i, b in enumerate(backends_raw))
        seen: dict[str, int] = {}
        for i, b in enumerate(backends):
            if b.id in seen:
                raise ConfigError(f"duplicate backend id {b.id!r} (first defined at backends[{seen[b.id]}])",
                                  path=path, key=f"backends[{i}].id")
            seen[b.id] = i
        if not backends:
            raise ConfigError("expected at least one backend", path=path, key="backends")
    report = r.table(raw, "report")
    r.keys(report, "report", {"baseline"})
    baseline = r.get(report, "report.baseline", str, backends[0].id)
    ids = [b.id for b in backends]
    if baseline not in ids:
        raise r.error("report.baseline", "expected a configured backend id" + _did_you_mean(baseline, ids), baseline)
    return GreenrouteConfig(path, placement, MappingProxyType(sources), carbon, catalog_url, backends,
                            on_overwrite, cooldown, cache, rebalance_default_horizon_days=horizon,
                            report_baseline=baseline)


def _defaults() -> GreenrouteConfig:
    return GreenrouteConfig(None, PlacementSettings(), MappingProxyType({}), CarbonModel(),
                            MEMORY_CATALOG, tuple(default_backends()))


# -- sections -------------------------------------------------------------------------------


def _placement(r: _Reader, t: Mapping[str, Any]) -> PlacementSettings:
    r.keys(t, "placement", {"signal", "sources", "objective", "cache_ttl_seconds", "max_staleness_seconds",
                            "time_budget_ms", "weights", "allowed_providers", "allowed_regions",
                            "allowed_countries", "audit_log"})
    d = PlacementSettings()
    signal = r.choice(t, "placement.signal", [s.value for s in SignalKind], d.signal.value)
    sources = tuple(r.str_list(t, "placement.sources", list(d.sources)) or ())
    for i, s in enumerate(sources):
        if s not in KNOWN_SOURCES:
            raise r.error(f"placement.sources[{i}]", f"unknown source (expected one of {', '.join(KNOWN_SOURCES)})"
                          + _did_you_mean(s, KNOWN_SOURCES), s)
    objective = r.choice(t, "placement.objective", [o.value for o in Objective], d.objective.value)
    w = r.table(t, "weights", "placement.weights")
    r.keys(w, "placement.weights", {"renewable", "carbon", "pue", "wue"})
    weights = ScoreWeights(**{k: r.number(w, f"placement.weights.{k}", getattr(d.weights, k), minimum=0.0)
                              for k in ("renewable", "carbon", "pue", "wue")})
    providers = r.str_list(t, "placement.allowed_providers", None)
    for i, p in enumerate(providers or ()):
        if p not in {x.value for x in Provider}:
            raise r.error(f"placement.allowed_providers[{i}]", "unknown provider (expected one of "
                          + ", ".join(x.value for x in Provider) + ")", p)
    regions = r.str_list(t, "placement.allowed_regions", None)
    countries = r.str_list(t, "placement.allowed_countries", None)
    for i, c in enumerate(countries or ()):
        if len(c) != 2 or not c.isalpha() or not c.isupper():
            raise r.error(f"placement.allowed_countries[{i}]", "expected an ISO 3166-1 alpha-2 code like \"DE\"", c)
    policy = PlacementPolicy(
        allowed_providers=frozenset(Provider(p) for p in providers) if providers is not None else None,
        allowed_regions=frozenset(regions) if regions is not None else None,
        allowed_countries=frozenset(countries) if countries is not None else None,
    )
    return PlacementSettings(
        signal=SignalKind(signal),
        sources=sources,
        objective=Objective(objective),
        cache_ttl_seconds=r.number(t, "placement.cache_ttl_seconds", d.cache_ttl_seconds, minimum=0.0),
        max_staleness_seconds=r.number(t, "placement.max_staleness_seconds", d.max_staleness_seconds, minimum=0.0),
        time_budget_ms=r.number(t, "placement.time_budget_ms", d.time_budget_ms, minimum=1.0),
        weights=weights,
        policy=policy,
        audit_log=r.get(t, "placement.audit_log", str, None),
    )


_SOURCE_KEYS: dict[str, set[str]] = {
    "watttime": {"username_env", "password_env", "base_url", "timeout_seconds", "cache_ttl_seconds", "max_retries"},
    "electricitymaps": {"api_key_env", "base_url", "timeout_seconds", "cache_ttl_seconds", "max_retries"},
    "ukcarbon": {"base_url", "timeout_seconds", "cache_ttl_seconds", "max_retries", "regions"},
    "manual": {"signal", "intensities"},
    "embedded": set(),
}


def _sources(r: _Reader, t: Mapping[str, Any], placement: PlacementSettings) -> dict[str, SourceSettings]:
    r.keys(t, "sources", set(KNOWN_SOURCES))
    out: dict[str, SourceSettings] = {}
    for name in KNOWN_SOURCES:
        s = r.table(t, name, f"sources.{name}")
        for key in s:
            if key.lower() in _SECRET_KEYS:
                raise r.error(f"sources.{name}.{key}", "secrets are never read from the config file; name an "
                              f"environment variable with {key}_env instead", "<hidden>")
        r.keys(s, f"sources.{name}", _SOURCE_KEYS[name])
        for key, value in s.items():
            if key.endswith("_env") and (not isinstance(value, str) or not value):
                raise r.error(f"sources.{name}.{key}", "expected the name of an environment variable", value)
            if key == "base_url" and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
                raise r.error(f"sources.{name}.{key}", "expected an http:// or https:// URL", value)
            if key in {"timeout_seconds", "cache_ttl_seconds", "max_retries"}:
                r.number(s, f"sources.{name}.{key}", 0.0, minimum=0.0)
        if name == "manual":
            r.choice(s, "sources.manual.signal", [k.value for k in SignalKind], "average")
            for region, value in r.table(s, "intensities", "sources.manual.intensities").items():
                r.number({region: value}, f"sources.manual.intensities.{region}", 0.0, minimum=0.0)
        out[name] = SourceSettings(name, MappingProxyType(dict(s)))
    return out


_CACHE_SCHEMES = ("redis", "rediss", "unix")
_BUDGET_SOURCES = tuple(s.value for s in GridDataSource if s.value not in {"embedded", "manual"})


#: ``[catalog]`` keys of server catalogs (PostgreSQL), documented in its adapter; they reach the adapter as
#: query parameters of the URL, since a catalog is opened from its URL alone.
_CATALOG_KEYS = ("schema", "pool_size", "statement_timeout_ms", "connect_timeout_seconds", "retry_seconds",
                 "password_env")


def _catalog_keys(r: _Reader, t: Mapping[str, Any]) -> None:
    for key in t:
        if key.lower() in _SECRET_KEYS:
            raise r.error(f"catalog.{key}", "secrets are never read from the config file; set PGPASSWORD or name "
                          "an environment variable with password_env", "<hidden>")
    r.keys(t, "catalog", {"url", *_CATALOG_KEYS})


def _catalog_url(r: _Reader, t: Mapping[str, Any], url: str) -> str:
    """``url`` with the server keys of ``[catalog]`` as query parameters; a password in it is refused."""
    from urllib.parse import urlencode, urlunsplit

    parts = urlsplit(url)
    if ("@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]) or "password" in parse_qs(parts.query):
        raise ConfigError("the URL must not contain a password (it would show in logs and in `greenroute config "
                          "check`); set PGPASSWORD, name a variable with password_env, or use a libpq service "
                          "or password file", path=r.path, key="catalog.url")
    given = {k: t[k] for k in _CATALOG_KEYS if k in t}
    if not given:
        return url
    if parts.scheme not in ("postgresql", "postgres"):
        raise r.error(f"catalog.{next(iter(given))}", "only a postgresql:// catalog takes this key", None)
    for key, value in given.items():
        if key in ("pool_size", "statement_timeout_ms"):
            least = 1 if key == "pool_size" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise r.error(f"catalog.{key}", f"expected a whole number >= {least}", value)
        elif key in ("connect_timeout_seconds", "retry_seconds"):
            r.number(t, f"catalog.{key}", 0.0, minimum=0.0)
        elif not isinstance(value, str) or not value or (key == "schema" and not value.isidentifier()):
            raise r.error(f"catalog.{key}", "expected a name" if key == "schema" else
                          "expected the name of an environment variable", value)
    query = urlencode({k: str(v) for k, v in given.items()})
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


def _cache(r: _Reader, t: Mapping[str, Any], placement: PlacementSettings) -> CacheSettings:
    r.keys(t, "cache", {"url", "key_prefix", "timeout_ms", "local_ttl_seconds", "lock_seconds", "retry_seconds",
                        "username_env", "password_env", "budgets"})
    for key in t:
        if key.lower() in _SECRET_KEYS:
            raise r.error(f"cache.{key}", "secrets are never read from the config file; name an environment "
                          "variable with password_env instead", "<hidden>")
    d = CacheSettings()
    url = r.get(t, "cache.url", str, None)
    if url is not None:
        _check_cache_url(r, url)
    prefix = r.get(t, "cache.key_prefix", str, d.key_prefix)
    if not prefix or any(c.isspace() for c in prefix):
        raise r.error("cache.key_prefix", "expected a non-empty prefix without spaces", prefix)
    for key in ("username_env", "password_env"):
        value = t.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise r.error(f"cache.{key}", "expected the name of an environment variable", value)
    budgets = dict(d.budgets)
    table = r.table(t, "budgets", "cache.budgets")
    for name, b in table.items():
        at = f"cache.budgets.{name}"
        if name not in _BUDGET_SOURCES:
            raise ConfigError(f"unknown source (expected one of {', '.join(_BUDGET_SOURCES)})"
                              + _did_you_mean(name, _BUDGET_SOURCES), path=r.path, key=at)
        if not isinstance(b, dict):
            raise r.error(at, "expected a table with calls and window_seconds", b)
        r.keys(b, at, {"calls", "window_seconds"})
        if "calls" not in b or "window_seconds" not in b:
            raise ConfigError("expected both calls and window_seconds", path=r.path, key=at)
        calls = r.get(b, f"{at}.calls", int, 0)
        if calls < 0:
            raise r.error(f"{at}.calls", "expected a whole number >= 0 (0: no limit)", calls)
        window = r.number(b, f"{at}.window_seconds", 0.0, minimum=0.001)
        budgets[name] = RateBudget(calls, window)
    return CacheSettings(
        url=url,
        key_prefix=prefix,
        timeout_ms=r.number(t, "cache.timeout_ms", d.timeout_ms, minimum=1.0, maximum=60_000.0),
        local_ttl_seconds=min(r.number(t, "cache.local_ttl_seconds", d.local_ttl_seconds, minimum=0.0),
                              placement.cache_ttl_seconds),
        lock_seconds=r.number(t, "cache.lock_seconds", d.lock_seconds, minimum=0.1),
        retry_seconds=r.number(t, "cache.retry_seconds", d.retry_seconds, minimum=0.0),
        username_env=t.get("username_env"),
        password_env=t.get("password_env"),
        budgets=MappingProxyType(budgets),
    )


def _check_cache_url(r: _Reader, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in _CACHE_SCHEMES:
        raise r.error("cache.url", "expected a redis://, rediss:// or unix:// URL", url)
    try:
        password = parts.password
        if parts.port is not None and not 0 < parts.port < 65536:
            raise ValueError
    except ValueError:
        raise r.error("cache.url", "expected host:port with a numeric port", url) from None
    query = parse_qs(parts.query)
    if password or "password" in query:
        raise r.error("cache.url", "secrets are never read from the config file; take the password out of the "
                      "URL and name an environment variable with cache.password_env", "<hidden>")
    if parts.scheme == "unix":
        if not parts.path:
            raise r.error("cache.url", "expected a socket path (unix:///run/redis.sock?db=0)", url)
    elif not parts.hostname:
        raise r.error("cache.url", "expected a host (redis://127.0.0.1:6379/0)", url)
    db = query.get("db", [parts.path.strip("/")] if parts.scheme != "unix" else ["0"])[0] or "0"
    if not db.isdigit():
        raise r.error("cache.url", "expected a database number (redis://host:6379/0)", url)


def _carbon(r: _Reader, t: Mapping[str, Any]) -> CarbonModel:
    r.keys(t, "carbon", {"energy_wh_per_byte", "storage_wh_per_tb_hour", "replication"})
    d = CarbonModel()
    rep = r.table(t, "replication", "carbon.replication")
    r.keys(rep, "carbon.replication", {p.value for p in Provider})
    replication = dict(DEFAULT_REPLICATION)
    for key in rep:
        replication[Provider(key)] = r.number(rep, f"carbon.replication.{key}", 1.0, minimum=1.0)
    return CarbonModel(
        energy_wh_per_byte=r.number(t, "carbon.energy_wh_per_byte", d.energy_wh_per_byte, minimum=0.0),
        storage_wh_per_tb_hour=r.number(t, "carbon.storage_wh_per_tb_hour", d.storage_wh_per_tb_hour, minimum=0.0),
        replication=MappingProxyType(replication),
    )


_BACKEND_KEYS = {"id", "provider", "region", "root", "renewable_pct", "pue", "wue", "grid_zone",
                 "watttime_region", "country_code", "storage_options", "read_only", "no_create", "profile",
                 "market_factor_g_per_kwh"}


def _backend(r: _Reader, t: Mapping[str, Any], at: str) -> Backend:
    r.keys(t, at, _BACKEND_KEYS)
    for key in ("id", "provider", "region", "root"):
        if key not in t and not (key != "root" and "profile" in t):
            raise r.error(f"{at}.{key}", "missing required key", None)
    base = None
    if "profile" in t:
        name = r.get(t, f"{at}.profile", str, "")
        names = [p.backend_id for p in PROFILES]
        if name not in names:
            raise r.error(f"{at}.profile", f"unknown profile (expected one of {', '.join(names)})"
                          + _did_you_mean(name, names), name)
        base = profile_for(name)
    backend_id = r.get(t, f"{at}.id", str, base.backend_id if base else "")
    if not backend_id or not all(ch.isalnum() or ch in "-_." for ch in backend_id):
        raise r.error(f"{at}.id", "expected a non-empty name of letters, digits, '-', '_' or '.'", backend_id)
    provider_text = r.get(t, f"{at}.provider", str, base.provider.value if base else "")
    providers = [p.value for p in Provider]
    if provider_text not in providers:
        raise r.error(f"{at}.provider", f"unknown provider (expected one of {', '.join(providers)})"
                      + _did_you_mean(provider_text, providers), provider_text)
    provider = Provider(provider_text)
    region = r.get(t, f"{at}.region", str, base.region if base else "")
    root = r.get(t, f"{at}.root", str, "")
    scheme = {Provider.S3: ("s3://",), Provider.GCS: ("gs://", "gcs://"), Provider.AZURE: ("az://", "abfs://"),
              Provider.FILE: ("file://", "/"), Provider.MEMORY: ("memory://",)}[provider]
    if not root.startswith(scheme):
        raise r.error(f"{at}.root", f"expected a {provider.value} URL starting with {' or '.join(scheme)}", root)
    default_pue = base.pue if base else FLEET_PUE[provider][0]
    pue = r.number(t, f"{at}.pue", default_pue, minimum=1.0, why="PUE is at least 1.0 by definition")
    renewable = r.optional_number(t, f"{at}.renewable_pct", base.renewable_pct if base else None,
                                  minimum=0.0, maximum=100.0)
    wue = r.optional_number(t, f"{at}.wue", base.wue if base else None, minimum=0.0)
    grid_zone = r.get(t, f"{at}.grid_zone", str, base.grid_zone if base else None)
    watttime_region = r.get(t, f"{at}.watttime_region", str, None)
    country = r.get(t, f"{at}.country_code", str, None)
    if country is not None and (len(country) != 2 or not country.isalpha() or not country.isupper()):
        raise r.error(f"{at}.country_code", "expected an ISO 3166-1 alpha-2 code like \"SE\"", country)
    data = embedded_data()
    if grid_zone is not None:
        try:
            data.zone(grid_zone)
        except UnknownRegionError as exc:
            raise UnknownRegionError(grid_zone, exc.suggestions, path=r.path, key=f"{at}.grid_zone") from None
    elif not data.has_region(region):
        suggestions = data.suggest(region)
        raise UnknownRegionError(region, suggestions, path=r.path, key=f"{at}.region (no grid data; "
                                 "use a cloud region or set grid_zone)")
    options = r.table(t, "storage_options", f"{at}.storage_options")
    return Backend(
        id=backend_id, provider=provider, region=region, root=root, pue=pue, renewable_pct=renewable, wue=wue,
        grid_zone=grid_zone, watttime_region=watttime_region, country_code=country,
        storage_options=MappingProxyType(dict(options)),
        read_only=r.get(t, f"{at}.read_only", bool, False),
        no_create=r.get(t, f"{at}.no_create", bool, False),
        market_factor_g_per_kwh=r.optional_number(t, f"{at}.market_factor_g_per_kwh", None, minimum=0.0),
    )


def _manual_source(settings: SourceSettings, path: str | None) -> ManualGridSource:
    values = settings.options.get("intensities", {})
    signal = SignalKind(settings.options.get("signal", "average"))
    return ManualGridSource({str(k): float(v) for k, v in values.items()}, signal=signal)


_SIGNAL_OF = {"watttime": SignalKind.MARGINAL}


def _signal_of(name: str) -> SignalKind:
    return _SIGNAL_OF.get(name, SignalKind.AVERAGE)


def _grid_source_factory(name: str) -> Callable[[SourceSettings, PlacementSettings], GridSource] | None:
    factory: Callable[[SourceSettings, PlacementSettings], GridSource] | None = load_entry_point(
        GRID_SOURCE_ENTRY_POINTS, name)
    return factory


# -- validation helpers -----------------------------------------------------------------------


def _did_you_mean(value: str, choices: Any) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


class _Reader:
    """Typed access to TOML tables that raises :class:`ConfigError` naming file and key."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def error(self, key: str, expected: str, got: Any) -> ConfigError:
        shown = "" if got is None else f", got {got!r}" if not isinstance(got, (dict, list)) else \
            f", got {_type_name(got)}"
        return ConfigError(f"{expected}{shown}", path=self.path, key=key)

    def keys(self, table: Mapping[str, Any], at: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{at}.{key}" if at else key
                hint = _did_you_mean(key, sorted(allowed))
                raise ConfigError(f"unknown key{hint or ' (allowed: ' + ', '.join(sorted(allowed)) + ')'}",
                                  path=self.path, key=where)

    def table(self, parent: Mapping[str, Any], key: str, at: str | None = None) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.error(at or key, "expected a table", value)
        return value

    def get(self, t: Mapping[str, Any], key: str, kind: type[T], default: T) -> T:
        name = key.rsplit(".", 1)[-1]
        if name not in t:
            return default
        value = t[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(key, f"expected {_type_name(kind())}", value)
        return value

    def choice(self, t: Mapping[str, Any], key: str, choices: list[str], default: str) -> str:
        value = self.get(t, key, str, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}" + _did_you_mean(value, choices), value)
        return value

    def number(self, t: Mapping[str, Any], key: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None, why: str = "") -> float:
        name = key.rsplit(".", 1)[-1]
        if name not in t:
            return default
        value = t[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, "expected a number", value)
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected a number >= {minimum:g}" + (f" ({why})" if why else ""), value)
        if maximum is not None and value > maximum:
            raise self.error(key, f"expected a number <= {maximum:g}", value)
        return float(value)

    def optional_number(self, t: Mapping[str, Any], key: str, default: float | None, *,
                        minimum: float | None = None, maximum: float | None = None) -> float | None:
        if key.rsplit(".", 1)[-1] not in t:
            return default
        return self.number(t, key, 0.0, minimum=minimum, maximum=maximum)

    def str_list(self, t: Mapping[str, Any], key: str, default: list[str] | None) -> list[str] | None:
        name = key.rsplit(".", 1)[-1]
        if name not in t:
            return default
        value = t[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "expected an array of strings", value)
        return list(value)
