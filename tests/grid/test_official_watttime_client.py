"""The official ``watttime`` PyPI client against the fake WattTime server.

If WattTime's own client can log in, page through history and read forecasts from the fake, the
fake speaks the documented API and not just greenroute's reading of it. The client reads its base
URL from ``WATTTIME_API_URL`` (at import time) and credentials from ``WATTTIME_USER`` /
``WATTTIME_PASSWORD``, and it configures root logging on import, so it runs in a subprocess.

The test skips when the package is not installed, unless ``GREENROUTE_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from tests.fakes import FakeWattTime

from greenroute.adapters.grid.watttime import WattTimeGridApiStrategy, lbs_per_mwh_to_g_per_kwh

_SCRIPT = r"""
import json, sys
from datetime import datetime, timezone
try:
    from watttime import WattTimeBase, WattTimeForecast, WattTimeHistorical, WattTimeMyAccess
except ImportError as exc:
    print(json.dumps({"import_error": str(exc)}))
    sys.exit(3)
forecast = WattTimeForecast().get_forecast_json("CAISO_NORTH", horizon_hours=0)
day = WattTimeForecast().get_forecast_json("CAISO_NORTH", horizon_hours=24)
history = WattTimeHistorical().get_historical_jsons(
    datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 2, 15, tzinfo=timezone.utc), "CAISO_NORTH")
where = WattTimeBase().region_from_loc(40.0, -105.0)
access = WattTimeMyAccess().get_access_json()
print(json.dumps({
    "value": forecast["data"][0]["value"], "units": forecast["meta"]["units"], "points": len(day["data"]),
    "history_chunks": len(history), "history_points": sum(len(h["data"]) for h in history),
    "region": where["region"], "access_regions": [r["region"] for r in access["signal_types"][0]["regions"]],
}))
"""


def _require_or_skip(reason: str) -> None:
    if os.environ.get("GREENROUTE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason}, and GREENROUTE_REQUIRE_INTEGRATION=1")
    print(f"skipping: {reason}")
    pytest.skip(reason)


def test_the_official_watttime_client_reads_the_fake() -> None:
    if importlib.util.find_spec("watttime") is None:
        _require_or_skip("the official 'watttime' package is not installed (pip install watttime)")
    with FakeWattTime(locations={(40.0, -105.0): "PSCO"}) as wt:
        env = {**os.environ, "WATTTIME_API_URL": wt.url, "WATTTIME_USER": wt.username,
               "WATTTIME_PASSWORD": wt.password}
        done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode == 3:
            _require_or_skip(f"the 'watttime' package does not import: {done.stdout.strip()}")
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["value"] == 812.4
        assert result["units"] == "lbs_co2_per_mwh"
        assert result["points"] == 288
        assert result["history_chunks"] == 2  # its 30-day chunks stay inside the fake's 32-day limit
        assert result["history_points"] == 45 * 24 + 1
        assert result["region"] == "PSCO"
        assert "CAISO_NORTH" in result["access_regions"]
        assert wt.count("/login") >= 1
        assert all(r.params.get("signal_type") == "co2_moer" for r in wt.requests if r.path == "/v3/forecast")

        with WattTimeGridApiStrategy(username=wt.username, password=wt.password, base_url=wt.url) as ours:
            value = ours.get_grid_carbon_data("anywhere", zone="CAISO_NORTH")
        assert value.carbon_intensity_g_per_kwh == lbs_per_mwh_to_g_per_kwh(result["value"])
