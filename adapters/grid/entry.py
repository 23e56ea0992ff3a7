"""The ``greenroute.grid_sources`` entry points: a source's HTTP client is imported only if it can answer.

Building WattTime's or Electricity Maps' client imports httpx and tenacity (a few hundred
milliseconds). A command that runs without keys, such as ``greenroute place`` on a fresh machine,
would pay that only to learn that no credentials are set. These factories validate the settings,
check the credential variables first, and return an unavailable source that says why; only a source
with credentials (or a keyless one) loads its client module.
"""

from __future__ import annotations

from greenroute.config import PlacementSettings, SourceSettings, UnavailableSource
from greenroute.model import SignalKind
from greenroute.ports import GridSource

from ._settings import client_options, env_secret, env_var_name

__all__ = ["electricitymaps", "ukcarbon", "watttime"]


def watttime(settings: SourceSettings, placement: PlacementSettings) -> GridSource:
    """WattTime v3 (marginal), from ``[sources.watttime]``; see :func:`.watttime.from_settings`."""
    client_options(settings, placement, default_base_url="https://api.watttime.org")
    user = env_secret(settings, "username_env", "WATTTIME_USERNAME")
    password = env_secret(settings, "password_env", "WATTTIME_PASSWORD")
    if not (user and password):
        names = (f"${env_var_name(settings, 'username_env', 'WATTTIME_USERNAME')} and "
                 f"${env_var_name(settings, 'password_env', 'WATTTIME_PASSWORD')}")
        return UnavailableSource("watttime", SignalKind.MARGINAL, f"no credentials (set {names})")
    from .watttime import from_settings

    return from_settings(settings, placement)


def electricitymaps(settings: SourceSettings, placement: PlacementSettings) -> GridSource:
    """Electricity Maps (average), from ``[sources.electricitymaps]``; see :func:`.electricitymaps.from_settings`."""
    client_options(settings, placement, default_base_url="https://api.electricitymaps.com/v3")
    if not env_secret(settings, "api_key_env", "ELECTRICITYMAPS_API_KEY"):
        name = env_var_name(settings, "api_key_env", "ELECTRICITYMAPS_API_KEY")
        return UnavailableSource("electricitymaps", SignalKind.AVERAGE, f"no API key (set ${name})")
    from .electricitymaps import from_settings

    return from_settings(settings, placement)


def ukcarbon(settings: SourceSettings, placement: PlacementSettings) -> GridSource:
    """The UK Carbon Intensity API (keyless); see :func:`.ukcarbon.from_settings`."""
    from .ukcarbon import from_settings

    return from_settings(settings, placement)
