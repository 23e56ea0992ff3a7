"""The carbon model, against a case computed by hand."""

from __future__ import annotations

import pytest

from greenroute import CarbonModel, Provider
from greenroute.carbon import HOURS_PER_MONTH


def test_hand_computed_case() -> None:
    # 2.5 GB to S3 in eu-north-1: PUE 1.10, 21 gCO2e/kWh, kept 90 days.
    # write:  2.5e9 B * 1e-9 Wh/B * 1.10            = 2.75 Wh      -> 2.75 * 21 / 1000    = 0.05775 g
    # month:  0.0025 TB * 0.65 * 730 h * 6 * 1.10   = 7.82925 Wh   -> 7.82925 * 21 / 1000 = 0.16441425 g
    # 90 d:   0.0025 TB * 0.65 * 2160 h * 6 * 1.10  = 23.166 Wh    -> 23.166 * 21 / 1000  = 0.486486 g
    estimate = CarbonModel().estimate(2_500_000_000, provider=Provider.S3, pue=1.10,
                                      carbon_intensity_g_per_kwh=21.0, retention_days=90)
    assert estimate.write_gco2e == pytest.approx(0.05775, rel=1e-12)
    assert estimate.at_rest_gco2e_per_month == pytest.approx(0.16441425, rel=1e-12)
    assert estimate.retention_gco2e == pytest.approx(0.486486, rel=1e-12)
    assert estimate.total_gco2e == pytest.approx(0.05775 + 0.486486, rel=1e-12)


def test_write_formula_is_the_seeds() -> None:
    model = CarbonModel()
    assert model.write_energy_wh(10**9, pue=1.0) == pytest.approx(1.0)  # CCF: 0.001 kWh per GB
    assert model.write_gco2e(0, pue=1.5, carbon_intensity_g_per_kwh=500) == 0.0


def test_replication_per_provider_and_overrides() -> None:
    model = CarbonModel()
    size, pue, intensity = 10**12, 1.0, 1000.0
    s3 = model.at_rest_gco2e(size, hours=HOURS_PER_MONTH, provider=Provider.S3, pue=pue,
                             carbon_intensity_g_per_kwh=intensity)
    gcs = model.at_rest_gco2e(size, hours=HOURS_PER_MONTH, provider=Provider.GCS, pue=pue,
                              carbon_intensity_g_per_kwh=intensity)
    local = model.at_rest_gco2e(size, hours=HOURS_PER_MONTH, provider=Provider.FILE, pue=pue,
                                carbon_intensity_g_per_kwh=intensity)
    assert local == pytest.approx(0.65 * 730)  # 1 TB, 1 copy, 1 kg per kWh
    assert s3 == pytest.approx(6 * local)
    assert gcs == pytest.approx(2 * local)
    custom = CarbonModel(storage_wh_per_tb_hour=1.2, replication={Provider.S3: 3.0})
    assert custom.at_rest_gco2e(size, hours=730, provider=Provider.S3, pue=pue,
                                carbon_intensity_g_per_kwh=intensity) == pytest.approx(1.2 * 730 * 3)


def test_at_rest_dominates_a_month() -> None:
    est = CarbonModel().estimate(10**9, provider=Provider.S3, pue=1.1, carbon_intensity_g_per_kwh=300)
    assert est.at_rest_gco2e_per_month / est.write_gco2e == pytest.approx(0.001 * 0.65 * 730 * 6)
    assert est.retention_gco2e == 0.0
