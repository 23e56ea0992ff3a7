"""A fleet-wide grid cache in Redis or Valkey (redis-py): :class:`greenroute.ports.SharedGridCache`.

For each grid key ``(source, region, zone, signal)`` four Redis keys hold, under the configured prefix
(``greenroute:grid:watttime:us-west-2:-:marginal`` ...):

* the value: JSON with its full provenance (value, unit, signal kind, source, region, zone,
  observed_at, fetched_at, is_estimated, renewable share) and the fencing token of the fetch that
  stored it, kept ``max_staleness_seconds``. Never a credential or token of a grid API.
* ``:fresh``: the fencing token again, expiring after the TTL (Redis's clock, so hosts' clocks
  do not matter). A value is fresh while its marker exists and names it.
* ``:lock``: ``"<fence>:<owner>"`` while one process fetches (``SET NX PX``, released only by a
  script that checks the owner).
* ``:fail``: why the fleet's last fetch failed, expiring after the failure backoff.

``budget:<source>`` is a sorted set of claim times: a sliding-window rate budget on Redis's clock,
so the fleet makes at most N calls in *any* window. ``fence`` (the one key without an expiry) holds
the last fencing token handed out; tokens grow with Redis's clock in microseconds, so they keep
growing across a restart.

A read is one ``MGET`` for all keys; claims are one pipeline of one Lua script per key. Claims and
stores are scripts, so checking and writing is atomic. Anything under these keys that greenroute
did not write (wrong type, malformed JSON, another key's value, a key without an expiry) is
ignored and overwritten, never trusted.

Connections use short timeouts and no retries; a failure is an :class:`OSError`
(``ConnectionError``/``TimeoutError``) carrying the driver's error as ``__cause__``, and the
pool's idle connections are dropped, so the next call reconnects to a restarted server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from greenroute.config import CacheSettings, RateBudget
from greenroute.model import GridCarbonData, GridDataSource, SignalKind
from greenroute.ports import GridKey, SharedGridClaim, SharedGridEntry

__all__ = ["FORMAT", "RedisGridCache", "from_settings"]

#: The value format's name; a value without it is foreign.
FORMAT = "greenroute.grid/1"
UNIT = "g/kWh"
_FAIL_MARK = "f1 "
_SOURCES = frozenset(s.value for s in GridDataSource)

T = TypeVar("T")

# Shared by the scripts: a string key's value, or false; a key of another type is foreign and dropped.
# A key greenroute wrote always has an expiry; one without is foreign and dropped.
_LUA_HELPERS = """
local function str(k)
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then return false end
  if t ~= 'string' then redis.call('DEL', k) return false end
  return redis.call('GET', k)
end
local function ours(k)
  local v = str(k)
  if not v then return false end
  if redis.call('PTTL', k) < 0 then redis.call('DEL', k) return false end
  return v
end
"""

# KEYS: value, fresh, lock, fail, budget, fence. ARGV: owner, lock_ms, force, budget calls, budget window ms.
_CLAIM = _LUA_HELPERS + """
if ARGV[3] ~= '1' and ours(KEYS[2]) then
  return {'fresh', str(KEYS[1]) or ''}
end
local fail = ours(KEYS[4])
if fail then return {'failed', fail} end
if ours(KEYS[3]) then return {'busy', ''} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local calls = tonumber(ARGV[4])
if calls > 0 then
  if redis.call('TYPE', KEYS[5])['ok'] ~= 'zset' then redis.call('DEL', KEYS[5]) end
  local now_ms = math.floor(now_us / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms - tonumber(ARGV[5]))
  if redis.call('ZCARD', KEYS[5]) >= calls then return {'budget', ''} end
end
local fence = math.max((tonumber(str(KEYS[6])) or 0) + 1, now_us)
local token = string.format('%.0f', fence)
redis.call('SET', KEYS[6], token)
if calls > 0 then
  redis.call('ZADD', KEYS[5], math.floor(now_us / 1000), token)
  redis.call('PEXPIRE', KEYS[5], ARGV[5])
end
redis.call('SET', KEYS[3], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return {'claimed', token .. ':' .. ARGV[1]}
"""

# KEYS: value, fresh, lock, fail. ARGV: json, fence, token, ttl ms, keep ms.
_STORE = _LUA_HELPERS + """
local cur = ours(KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' and doc['format'] == '""" + FORMAT + """' and type(doc['fence']) == 'number'
      and doc['fence'] > tonumber(ARGV[2]) then
    if str(KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('DEL', KEYS[4])
if str(KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1
"""

# KEYS: fail, lock. ARGV: reason, backoff ms, token.
_FAIL = _LUA_HELPERS + """
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if str(KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""


class _Script:
    """A Lua script run by ``EVALSHA``, sent whole only when the server does not know it yet."""

    def __init__(self, text: str) -> None:
        import hashlib

        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


_SCRIPTS = {name: _Script(text) for name, text in (("claim", _CLAIM), ("store", _STORE), ("fail", _FAIL))}


class RedisGridCache:
    """Grid values, fetch claims and rate budgets in one Redis or Valkey database.

    Args:
        client: A redis-py client, configured with short timeouts and no retries.
        description: Where it is, without credentials (shown in fallback reasons).
        key_prefix: Every key starts with it.
        lock_seconds: How long a claim lasts if its owner never stores or fails.
        budgets: Each source's fleet-wide rate budget.
        timeout_ms: The client's timeout, for error messages.

    Example:
        >>> from greenroute.config import CacheSettings
        >>> cache = from_settings(CacheSettings(url="redis://127.0.0.1:6379/0", key_prefix="doc:"))
        >>> cache.description
        'redis 127.0.0.1:6379/0'
        >>> cache.close()
    """

    def __init__(self, client: redis.Redis, *, description: str, key_prefix: str = "greenroute:",
                 lock_seconds: float = 10.0, budgets: Mapping[str, RateBudget] | None = None,
                 timeout_ms: float = 50.0) -> None:
        self._client = client
        self.description = description
        self.key_prefix = key_prefix
        self.lock_seconds = lock_seconds
        self.budgets = dict(budgets or {})
        self.timeout_ms = timeout_ms
        self._owner = os.urandom(6).hex()

    def __repr__(self) -> str:
        return f"RedisGridCache({self.description!r}, key_prefix={self.key_prefix!r})"

    # -- keys -------------------------------------------------------------------------------

    def key(self, key: GridKey) -> str:
        """The Redis key of ``key``'s value (the others add ``:fresh``, ``:lock`` and ``:fail``)."""
        source, region, zone, signal = key
        parts = (source, region, "-" if zone is None else zone, signal.value)
        return self.key_prefix + "grid:" + ":".join(quote(p, safe="-_.") for p in parts)

    def budget_key(self, source: str) -> str:
        """The Redis key of ``source``'s rate budget."""
        return f"{self.key_prefix}budget:{quote(source, safe='-_.')}"

    # -- SharedGridCache --------------------------------------------------------------------

    def read(self, keys: Sequence[GridKey]) -> list[SharedGridEntry]:
        """Each key's entry, in one ``MGET``.

        Raises:
            ConnectionError: Redis is unreachable or answered with an error.
            TimeoutError: Redis did not answer within the timeout.
        """
        if not keys:
            return []
        names: list[str] = []
        for key in keys:
            base = self.key(key)
            names += (base, base + ":fresh", base + ":lock", base + ":fail")
        raw: list[Any] = self._run("read", lambda: list(self._client.mget(names)))
        entries: list[SharedGridEntry] = []
        for i, key in enumerate(keys):
            value_raw, fresh_raw, lock_raw, fail_raw = raw[4 * i: 4 * i + 4]
            value, fence = decode_value(_bytes(value_raw), key)
            fresh = value is not None and fresh_raw is not None and fresh_raw == str(fence).encode()
            entries.append(SharedGridEntry(value, fresh, _is_lock(_bytes(lock_raw)), _failure(_bytes(fail_raw)),
                                           foreign=value_raw is not None and value is None))
        return entries

    def claim(self, keys: Sequence[GridKey], *, force: Sequence[bool] = ()) -> list[SharedGridClaim]:
        """Try to become each key's one fetcher, in one pipeline (see :class:`~greenroute.ports.SharedGridCache`).

        Raises:
            ConnectionError: Redis is unreachable or answered with an error.
            TimeoutError: Redis did not answer within the timeout.
        """
        if not keys:
            return []
        calls: list[tuple[list[str], list[Any]]] = []
        lock_ms = max(1, round(self.lock_seconds * 1000))
        for i, key in enumerate(keys):
            base = self.key(key)
            budget = self.budgets.get(key[0])
            limit, window_ms = (budget.calls, max(1, round(budget.window_seconds * 1000))) if budget else (0, 0)
            calls.append(([base, base + ":fresh", base + ":lock", base + ":fail", self.budget_key(key[0]),
                           self.key_prefix + "fence"],
                          [self._owner, lock_ms, "1" if i < len(force) and force[i] else "0", limit, window_ms]))
        results = self._scripts("claim", calls)
        claims: list[SharedGridClaim] = []
        for key, result in zip(keys, results, strict=True):
            outcome, payload = _pair(result)
            if outcome == "fresh":
                value, _ = decode_value(payload or None, key)
                claims.append(SharedGridClaim("fresh", value=value))
            elif outcome == "claimed":
                claims.append(SharedGridClaim("claimed", token=payload.decode()))
            elif outcome == "failed":
                claims.append(SharedGridClaim("failed", detail=_failure(payload) or "failed in another process"))
            elif outcome == "budget":
                claims.append(SharedGridClaim("budget", detail=str(self.budgets[key[0]])))
            else:
                claims.append(SharedGridClaim("busy"))
        return claims

    def store(self, key: GridKey, value: GridCarbonData, token: str, *, ttl_seconds: float,
              keep_seconds: float) -> bool:
        """Store a fetched value and release the claim; False when a newer fetch already stored one.

        Raises:
            ConnectionError: Redis is unreachable or answered with an error.
            TimeoutError: Redis did not answer within the timeout.
        """
        fence = int(token.split(":", 1)[0])
        base = self.key(key)
        ttl_ms = max(1, round(ttl_seconds * 1000))
        keep_ms = max(ttl_ms, round(keep_seconds * 1000))
        [result] = self._scripts("store", [([base, base + ":fresh", base + ":lock", base + ":fail"],
                                            [encode_value(key, value, fence), fence, token, ttl_ms, keep_ms])])
        return bool(result)

    def fail(self, key: GridKey, token: str, reason: str, *, backoff_seconds: float) -> None:
        """Record a failed fetch for ``backoff_seconds`` (none when 0) and release the claim.

        Raises:
            ConnectionError: Redis is unreachable or answered with an error.
            TimeoutError: Redis did not answer within the timeout.
        """
        base = self.key(key)
        backoff_ms = max(0, round(backoff_seconds * 1000))
        self._scripts("fail", [([base + ":fail", base + ":lock"], [_FAIL_MARK + reason[:300], backoff_ms, token])])

    def close(self) -> None:
        """Close every connection."""
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self._client.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _scripts(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)`` in one pipeline; load it if the server lost it."""
        script = _SCRIPTS[name]

        def run(by_sha: bool) -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                if by_sha:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                else:
                    pipe.eval(script.text, len(keys), *keys, *args)
            result: list[Any] = pipe.execute(raise_on_error=False)
            return result

        results = self._run(name, lambda: run(True))
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            results = self._run(name, lambda: run(False))  # a new or restarted server: send the text once
        for r in results:
            if isinstance(r, redis.exceptions.RedisError):
                raise ConnectionError(f"{name} failed ({_short(r)})") from r
        return results

    def _run(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except redis.exceptions.TimeoutError as exc:
            self._drop_idle()
            raise TimeoutError(f"timed out after {self.timeout_ms:g} ms ({what})") from exc
        except redis.exceptions.ConnectionError as exc:
            self._drop_idle()
            raise ConnectionError(f"unreachable ({_short(exc)})") from exc
        except redis.exceptions.RedisError as exc:
            raise ConnectionError(f"{what} failed ({_short(exc)})") from exc

    def _drop_idle(self) -> None:
        """Forget idle connections, which may point at a server that is gone, so the next call reconnects."""
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self._client.connection_pool.disconnect(inuse_connections=False)


def encode_value(key: GridKey, value: GridCarbonData, fence: int) -> str:
    """The JSON stored for ``value`` under ``key``: its provenance, nothing secret."""
    return json.dumps({
        "format": FORMAT,
        "fence": fence,
        "source": value.source.value,
        "region": key[1],
        "zone": key[2],
        "signal": value.signal.value,
        "value": value.carbon_intensity_g_per_kwh,
        "unit": UNIT,
        "grid_zone": value.grid_zone,
        "renewable_pct": value.renewable_pct,
        "observed_at": None if value.observed_at is None else value.observed_at.isoformat(),
        "fetched_at": value.fetched_at.isoformat(),
        "is_estimated": value.is_estimated,
    }, separators=(",", ":"))


def decode_value(raw: bytes | None, key: GridKey) -> tuple[GridCarbonData | None, int | None]:
    """The value and its fencing token, or ``(None, None)`` when ``raw`` is missing, malformed or foreign.

    A value is accepted only in greenroute's format, for exactly this key (source, region, zone and
    signal), with a finite non-negative intensity in g/kWh and timezone-aware timestamps.
    """
    if raw is None:
        return None, None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("unit") != UNIT:
        return None, None
    source, region, zone, signal = key
    intensity: Any = doc.get("value")
    fence = doc.get("fence")
    renewable: Any = doc.get("renewable_pct")
    grid_zone = doc.get("grid_zone")
    if (doc.get("source") != source or source not in _SOURCES or doc.get("region") != region
            or doc.get("zone") != zone or doc.get("signal") != signal.value
            or not isinstance(fence, int) or isinstance(fence, bool)
            or not _number(intensity) or intensity < 0
            or not (renewable is None or _number(renewable))
            or not (grid_zone is None or isinstance(grid_zone, str))
            or not isinstance(doc.get("is_estimated"), bool)):
        return None, None
    fetched_at = _time(doc.get("fetched_at"))
    observed_raw = doc.get("observed_at")
    observed_at = None if observed_raw is None else _time(observed_raw)
    if fetched_at is None or (observed_raw is not None and observed_at is None):
        return None, None
    value = GridCarbonData(region=region, grid_zone=grid_zone, carbon_intensity_g_per_kwh=float(intensity),
                           signal=SignalKind(signal), source=GridDataSource(source),
                           renewable_pct=None if renewable is None else float(renewable),
                           observed_at=observed_at, fetched_at=fetched_at, is_estimated=doc["is_estimated"])
    return value, fence


def from_settings(settings: CacheSettings) -> RedisGridCache:
    """Build the cache from ``[cache]`` (the ``greenroute.caches`` entry points ``redis``, ``rediss``, ``unix``).

    The username and password come only from the environment variables that ``username_env`` and
    ``password_env`` name. Connecting happens on first use, so a server that is down at startup
    costs nothing here.
    """
    if settings.url is None:
        raise ValueError("[cache] url is not set")
    timeout = settings.timeout_ms / 1000.0
    client = redis.Redis.from_url(
        settings.url,
        username=settings.env("username_env"),
        password=settings.env("password_env"),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name="greenroute",
    )
    return RedisGridCache(client, description=_describe(client), key_prefix=settings.key_prefix,
                          lock_seconds=settings.lock_seconds, budgets=settings.budgets,
                          timeout_ms=settings.timeout_ms)


def _describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"redis {kwargs['path']}?db={db}"
    return f"redis {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _pair(result: Any) -> tuple[str, bytes]:
    if isinstance(result, list) and len(result) == 2:
        outcome, payload = result
        return (outcome.decode() if isinstance(outcome, bytes) else str(outcome),
                payload if isinstance(payload, bytes) else str(payload).encode())
    return "busy", b""


def _bytes(raw: Any) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else None


def _is_lock(raw: bytes | None) -> bool:
    """Whether ``raw`` looks like a claim greenroute wrote (``<fence>:<owner>``); a foreign one does not count."""
    if raw is None:
        return False
    fence, _, owner = raw.partition(b":")
    return fence.isdigit() and len(owner) == 12 and all(c in b"0123456789abcdef" for c in owner)


def _failure(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if not text.startswith(_FAIL_MARK) or not text.isprintable():
        return None
    return text[len(_FAIL_MARK):] or "failed in another process"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
