"""The embedded grid dataset: complete, reproducible from shared/data, and answering correctly."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from greenroute import EmbeddedGridSource, GridDataSource, SignalKind, UnknownRegionError
from greenroute.embedded import embedded_data

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def _build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_embedded_data", ROOT / "tools" / "build_embedded_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_the_build_script_produces() -> None:
    if not (SHARED_DATA / "cloud_regions.csv").is_file():
        pytest.skip(f"shared dataset not found at {SHARED_DATA}; cannot re-derive the embedded files")
    built = _build_module().build(SHARED_DATA)
    for name, text in built.items():
        assert (ROOT / "src" / "greenroute" / "data" / name).read_text(encoding="utf-8") == text, name


def test_covers_every_listed_cloud_region() -> None:
    data = embedded_data()
    if (SHARED_DATA / "cloud_regions.csv").is_file():
        with (SHARED_DATA / "cloud_regions.csv").open(newline="", encoding="utf-8") as fh:
            listed = {row["region"] for row in csv.DictReader(fh)}
    else:  # still check the shipped file is whole
        listed = set(data.regions)
    assert listed <= set(data.regions)
    assert len(data.regions) >= 146
    by_provider: dict[str, int] = {}
    for region in data.regions:
        info = data.region(region)
        by_provider[info.provider] = by_provider.get(info.provider, 0) + 1
        assert info.carbon_intensity_g_per_kwh > 0
        assert len(info.country_code) == 2
    assert by_provider == {"aws": 37, "gcp": 45, "azure": 64}


def test_known_values_and_zone_mapping() -> None:
    data = embedded_data()
    assert data.region("us-east-1").em_zone == "US-MIDA-PJM"
    assert data.region("eu-west-2").em_zone == "GB"
    assert data.region("eu-west-2").watttime_region == "UK"
    assert data.region("ap-southeast-1").em_zone == "SG"
    assert data.region("eu-north-1").carbon_intensity_g_per_kwh == 21.0
    assert data.region("us-central1").carbon_intensity_g_per_kwh == 412.72  # Google's own 2024 figure
    assert data.region("us-central1").licence == "Apache-2.0"
    assert data.region("eu-north-1").licence == "ODbL-1.0"


def test_source_answers_average_embedded_estimated() -> None:
    value = EmbeddedGridSource().get_grid_carbon_data("westeurope")
    assert value.signal is SignalKind.AVERAGE
    assert value.source is GridDataSource.EMBEDDED
    assert value.is_estimated and not value.is_stale
    assert value.grid_zone == "NL"
    assert value.carbon_intensity_g_per_kwh == 251.0
    assert value.renewable_pct == 54.0
    assert value.observed_at is not None and value.observed_at.year == 2024


def test_explicit_zone_overrides_the_region() -> None:
    value = EmbeddedGridSource().get_grid_carbon_data("us-west-2", zone="US-NW-BPAT")
    assert value.grid_zone == "US-NW-BPAT"
    assert value.carbon_intensity_g_per_kwh == embedded_data().zone("US-NW-BPAT").carbon_intensity_g_per_kwh
    assert value.carbon_intensity_g_per_kwh != embedded_data().region("us-west-2").carbon_intensity_g_per_kwh
    on_prem = EmbeddedGridSource().get_grid_carbon_data("basement", zone="DE")
    assert on_prem.region == "basement" and on_prem.grid_zone == "DE"


def test_unknown_region_names_the_closest_known_regions() -> None:
    with pytest.raises(UnknownRegionError) as info:
        EmbeddedGridSource().get_grid_carbon_data("us-west-3")
    assert info.value.region == "us-west-3"
    assert "us-west-2" in info.value.suggestions
    assert "did you mean" in str(info.value)
    with pytest.raises(UnknownRegionError, match="unknown region 'XX-NOPE'"):
        EmbeddedGridSource().get_grid_carbon_data("us-west-2", zone="XX-NOPE")
