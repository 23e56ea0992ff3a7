"""``[report] baseline`` and the backends' market-based factors in the config."""

from __future__ import annotations

from typing import Any

import pytest

from greenroute.config import parse_config
from greenroute.errors import ConfigError


def _raw(**report: Any) -> dict[str, Any]:
    backends = [{"id": b, "provider": "memory", "region": r, "root": f"memory://cfg/{b}"}
                for b, r in (("first", "us-east-1"), ("second", "eu-north-1"))]
    backends[1]["market_factor_g_per_kwh"] = 12.5
    raw: dict[str, Any] = {"backends": backends}
    if report:
        raw["report"] = report
    return raw


def test_the_baseline_defaults_to_the_first_backend_and_can_be_named() -> None:
    assert parse_config(_raw()).baseline == "first"
    assert parse_config(_raw(baseline="second")).baseline == "second"


def test_an_unknown_baseline_or_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"report\.baseline.*did you mean 'second'"):
        parse_config(_raw(baseline="secnd"))
    with pytest.raises(ConfigError, match="report"):
        parse_config(_raw(base="first"))


def test_market_factors_are_read_and_never_negative() -> None:
    cfg = parse_config(_raw())
    assert [b.market_factor_g_per_kwh for b in cfg.backends] == [None, 12.5]
    raw = _raw()
    raw["backends"][0]["market_factor_g_per_kwh"] = -1
    with pytest.raises(ConfigError, match="market_factor_g_per_kwh"):
        parse_config(raw)
