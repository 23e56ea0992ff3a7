"""Settings plumbing shared by the grid sources, with no HTTP client behind it.

Credentials come only from environment variables that a source's ``[sources.NAME]`` table names, and
are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value. The entry points
(:mod:`.entry`) use this module to tell whether a source can answer before its HTTP client is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from greenroute.config import PlacementSettings, SourceSettings
from greenroute.errors import ConfigError

__all__ = ["Secret", "client_options", "env_secret", "env_var_name", "option_float", "option_int", "scrub"]


class Secret:
    """A credential (password, token, API key) that never shows itself in a repr, str or log line.

    Example:
        >>> s = Secret("hunter2")
        >>> repr(s), str(s), s.reveal()
        ('Secret(<hidden>)', 'Secret(<hidden>)', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def reveal(self) -> str | None:
        """The value itself, for the one place that sends it."""
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret(<hidden>)" if self._value is not None else "Secret(<unset>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle a credential into a cache or a queue
        raise TypeError("a Secret cannot be pickled")


def scrub(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """``text`` with every non-empty secret value replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, "***")
    return text


def env_secret(settings: SourceSettings, key: str, default_var: str) -> Secret:
    """The secret in the environment variable that option ``key`` names (``default_var`` if unset)."""
    var = settings.options.get(key, default_var)
    if not isinstance(var, str) or not var:
        raise ConfigError("expected the name of an environment variable", key=f"sources.{settings.name}.{key}")
    return Secret(os.environ.get(var) or None)


def env_var_name(settings: SourceSettings, key: str, default_var: str) -> str:
    """The environment variable name that option ``key`` names (``default_var`` if unset)."""
    var = settings.options.get(key, default_var)
    return var if isinstance(var, str) and var else default_var


def option_float(settings: SourceSettings, key: str, default: float | None) -> float | None:
    """Numeric option ``key`` as a float, or ``default``."""
    value = settings.options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"expected a number >= 0, got {value!r}", key=f"sources.{settings.name}.{key}")
    return float(value)


def option_int(settings: SourceSettings, key: str, default: int) -> int:
    """Integer option ``key``, or ``default``."""
    value = option_float(settings, key, None)
    if value is None:
        return default
    if value != int(value):
        raise ConfigError(f"expected a whole number, got {value!r}", key=f"sources.{settings.name}.{key}")
    return int(value)


def client_options(settings: SourceSettings, placement: PlacementSettings, *,
                   default_base_url: str) -> dict[str, Any]:
    """The options every grid client shares, validated from its ``[sources.NAME]`` table.

    ``base_url`` (an http(s) URL), ``timeout_seconds``, ``cache_ttl_seconds`` (default: the
    ``[placement]`` TTL) and ``max_retries`` (default 3), as keyword arguments for the client.
    """
    base_url = settings.options.get("base_url", default_base_url)
    if not isinstance(base_url, str):
        raise ConfigError("expected an http:// or https:// URL", key=f"sources.{settings.name}.base_url")
    ttl = option_float(settings, "cache_ttl_seconds", placement.cache_ttl_seconds)
    return {
        "base_url": base_url,
        "timeout_seconds": option_float(settings, "timeout_seconds", None),
        "cache_ttl_seconds": ttl if ttl is not None else placement.cache_ttl_seconds,
        "max_retries": option_int(settings, "max_retries", 3),
    }
