"""The ``[cache]`` table: defaults, validation with clear errors, and what it builds."""

from __future__ import annotations

from typing import Any

import pytest

from greenroute.adapters.cache.redis import RedisGridCache
from greenroute.config import CacheSettings, RateBudget, parse_config
from greenroute.errors import ConfigError


def cache_of(table: dict[str, Any]) -> CacheSettings:
    return parse_config({"cache": table}, path="greenroute.toml").cache


def test_defaults_keep_everything_in_process() -> None:
    config = parse_config({})
    assert config.cache.url is None and config.build_cache() is None
    assert config.build_signals().shared_cache is None
    assert config.cache.budgets == {"watttime": RateBudget(3000, 300.0)}


def test_a_full_table() -> None:
    cache = cache_of({"url": "rediss://cache.internal:6380/2", "key_prefix": "fleet-a:", "timeout_ms": 20,
                      "local_ttl_seconds": 0.5, "lock_seconds": 5, "retry_seconds": 2,
                      "password_env": "REDIS_PASSWORD",
                      "budgets": {"electricitymaps": {"calls": 600, "window_seconds": 60},
                                  "watttime": {"calls": 0, "window_seconds": 300}}})
    assert cache.url == "rediss://cache.internal:6380/2" and cache.key_prefix == "fleet-a:"
    assert (cache.timeout_ms, cache.local_ttl_seconds, cache.lock_seconds, cache.retry_seconds) == (20, 0.5, 5, 2)
    assert cache.budgets == {"watttime": RateBudget(0, 300.0), "electricitymaps": RateBudget(600, 60.0)}


def test_the_url_builds_a_redis_cache_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENROUTE_TEST_REDIS_PASSWORD", "s3cret-pw")
    config = parse_config({"cache": {"url": "redis://127.0.0.1:1/3", "password_env": "GREENROUTE_TEST_REDIS_PASSWORD"}})
    cache = config.build_cache()  # nothing listens on port 1: building must not connect
    assert isinstance(cache, RedisGridCache)
    assert cache.description == "redis 127.0.0.1:1/3"
    assert "s3cret-pw" not in repr(cache) + cache.description
    with pytest.raises(ConnectionError) as exc:
        cache.read([("watttime", "us-west-2", None, config.placement.signal)])
    assert "s3cret-pw" not in str(exc.value)
    cache.close()


@pytest.mark.parametrize(("table", "key", "message"), [
    ({"url": "http://127.0.0.1:6379"}, "cache.url", "expected a redis://, rediss:// or unix:// URL"),
    ({"url": "redis://:hunter2@127.0.0.1:6379/0"}, "cache.url", "cache.password_env"),
    ({"url": "unix:///run/redis.sock?db=0&password=hunter2"}, "cache.url", "cache.password_env"),
    ({"url": "redis://127.0.0.1:6379/x"}, "cache.url", "database number"),
    ({"url": "redis:///0"}, "cache.url", "expected a host"),
    ({"password": "hunter2"}, "cache.password", "password_env"),
    ({"urll": "redis://x"}, "cache.urll", "did you mean 'url'?"),
    ({"key_prefix": ""}, "cache.key_prefix", "non-empty prefix"),
    ({"timeout_ms": 0}, "cache.timeout_ms", ">= 1"),
    ({"password_env": ""}, "cache.password_env", "name of an environment variable"),
    ({"budgets": {"wattime": {"calls": 1, "window_seconds": 1}}}, "cache.budgets.wattime", "did you mean 'watttime'?"),
    ({"budgets": {"watttime": {"calls": -1, "window_seconds": 1}}}, "cache.budgets.watttime.calls", ">= 0"),
    ({"budgets": {"watttime": {"calls": 1}}}, "cache.budgets.watttime", "both calls and window_seconds"),
    ({"budgets": {"watttime": {"calls": 1.5, "window_seconds": 1}}}, "cache.budgets.watttime.calls", "integer"),
])
def test_invalid_tables_name_the_key_and_never_echo_a_secret(table: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        cache_of(table)
    assert exc.value.key == key and exc.value.path == "greenroute.toml"
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_local_ttl_never_exceeds_the_ttl() -> None:
    config = parse_config({"placement": {"cache_ttl_seconds": 0.5}, "cache": {"local_ttl_seconds": 5}})
    assert config.cache.local_ttl_seconds == 0.5
