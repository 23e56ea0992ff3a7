"""The green score, the registry, and its persistence."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from greenroute import BackendGreenScoreRegistry, ConfigError, GridDataUnavailableError, ScoreWeights, green_score
from greenroute.profiles import PROFILES

# Grid intensities (gCO2e/kWh) fixed for the hand computations below: the embedded 2024 values.
INTENSITY = {"us-west-2": 197.0, "eu-north-1": 21.0, "westeurope": 251.0, "us-central1": 412.72, "on-prem": 403.0}

# Hand-computed with the seed's figures:
#   renewable*0.4 + (1 - I/1000)*100*0.3 + (2 - pue)*100*0.2 + 5 (no WUE)
SEED_CASES = [
    ("aws-us-west-2", "us-west-2", 96, 1.135, 38.4 + 24.09 + 17.3 + 5),        # 84.79
    ("aws-eu-north-1", "eu-north-1", 100, 1.09, 40.0 + 29.37 + 18.2 + 5),      # 92.57
    ("azure-westeurope", "westeurope", 100, 1.12, 40.0 + 22.47 + 17.6 + 5),    # 85.07
    ("gcp-us-central1", "us-central1", 97, 1.10, 38.8 + 17.6184 + 18.0 + 5),   # 79.4184
    ("on-prem", "on-prem", 40, 1.5, 16.0 + 17.91 + 10.0 + 5),                  # 48.91
]


@pytest.mark.parametrize(("backend_id", "region", "renewable", "pue", "expected"), SEED_CASES)
def test_seed_formula_on_the_five_seed_profiles(backend_id: str, region: str, renewable: float, pue: float,
                                                expected: float) -> None:
    score = green_score(backend_id, region, carbon_intensity_g_per_kwh=INTENSITY[region],
                        renewable_pct=renewable, pue=pue)
    assert score.score == pytest.approx(expected, abs=1e-9)
    total = score.renewable_component + score.carbon_component + score.pue_component + score.wue_component
    assert total == pytest.approx(score.score, abs=1e-12)
    assert score.wue_component == pytest.approx(5.0)


def test_shipped_profiles_use_published_figures() -> None:
    expected = {
        "aws-us-west-2": 40.0 + 24.09 + 17.6 + 5,      # 100 %, PUE 1.12 (AWS 2024)
        "aws-eu-north-1": 40.0 + 29.37 + 18.0 + 5,     # 100 %, PUE 1.10 (AWS 2024)
        "azure-westeurope": 31.6 + 22.47 + 16.8 + 5,   # 79 %, PUE 1.16 (Microsoft NL)
        "gcp-us-central1": 34.8 + 17.6184 + 18.0 + 5,  # 87 % CFE 2024, PUE 1.10
        "on-prem": 16.0 + 17.91 + 10.0 + 5,            # seed defaults
    }
    registry = BackendGreenScoreRegistry()
    for p in PROFILES:
        registry.register_backend(p.backend_id, p.region, p.renewable_pct, p.pue, p.wue)
        registry.update_carbon_intensity(p.region, INTENSITY[p.region])
    got = {s.backend_id: s.score for s in registry.get_all_scores()}
    assert got == pytest.approx(expected, abs=1e-9)
    assert [s.backend_id for s in registry.get_all_scores()] == [
        "aws-eu-north-1", "aws-us-west-2", "azure-westeurope", "gcp-us-central1", "on-prem"]


def test_wue_component_and_edges() -> None:
    with_wue = green_score("b", "r", carbon_intensity_g_per_kwh=0, renewable_pct=0, pue=2.0, wue=0.18)
    assert with_wue.wue_component == pytest.approx((2 - 0.18) * 100 * 0.1)
    dirty = green_score("b", "r", carbon_intensity_g_per_kwh=1500, renewable_pct=0, pue=2.5)
    assert dirty.carbon_component == pytest.approx(-15.0)  # unclamped above 1000 g/kWh
    assert dirty.pue_component == pytest.approx(-10.0)     # unclamped above PUE 2
    worse = green_score("b", "r", carbon_intensity_g_per_kwh=1600, renewable_pct=0, pue=2.5)
    assert worse.score < dirty.score  # still monotone past the edge


def test_weights_are_configurable() -> None:
    weights = ScoreWeights(renewable=0.0, carbon=1.0, pue=0.0, wue=0.0)
    score = green_score("b", "r", carbon_intensity_g_per_kwh=250, renewable_pct=100, pue=1.1, weights=weights)
    assert score.score == pytest.approx(75.0)


def test_ties_are_broken_by_backend_id() -> None:
    registry = BackendGreenScoreRegistry()
    for backend_id in ("zeta", "alpha", "mid"):
        registry.register_backend(backend_id, "eu-north-1", 100, 1.1)
    registry.update_carbon_intensity("eu-north-1", 21)
    assert [s.backend_id for s in registry.get_all_scores()] == ["alpha", "mid", "zeta"]
    assert registry.get_best_backend(["zeta", "mid"]) == "mid"
    assert registry.get_best_backend(["unknown"]) is None


def test_update_carbon_intensity_updates_every_backend_in_the_region() -> None:
    registry = BackendGreenScoreRegistry()
    registry.register_backend("a", "eu-north-1", 100, 1.1)
    registry.register_backend("b", "eu-north-1", 50, 1.2)
    registry.register_backend("c", "us-east-1", 100, 1.1)
    assert registry.update_carbon_intensity("eu-north-1", 30) == 2
    assert registry.get_score("a").carbon_intensity_g_per_kwh == 30
    assert registry.get_score("b").carbon_intensity_g_per_kwh == 30
    with pytest.raises(GridDataUnavailableError, match="us-east-1"):
        registry.get_score("c")
    assert [s.backend_id for s in registry.get_all_scores()] == ["a", "b"]


@pytest.mark.parametrize(("renewable", "pue", "wue", "match"), [
    (101, 1.1, None, "renewable_pct"), (-1, 1.1, None, "renewable_pct"), (50, 0.9, None, "pue"),
    (50, 1.1, -0.1, "wue"),
])
def test_register_rejects_out_of_range_inputs(renewable: float, pue: float, wue: float | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BackendGreenScoreRegistry().register_backend("x", "eu-north-1", renewable, pue, wue)


def test_registry_round_trips_through_json(tmp_path: Path) -> None:
    registry = BackendGreenScoreRegistry(ScoreWeights(0.5, 0.2, 0.2, 0.1))
    registry.register_backend("a", "eu-north-1", 100, 1.1, 0.2)
    registry.register_backend("b", "us-east-1", 80, 1.3)
    registry.update_carbon_intensity("eu-north-1", 21)
    path = tmp_path / "registry.json"
    registry.save(path)
    loaded = BackendGreenScoreRegistry.load(path)
    assert loaded.weights == registry.weights
    assert loaded.backend_ids() == ["a", "b"]
    assert loaded.get_score("a") == registry.get_score("a")
    assert [s.score for s in loaded.get_all_scores()] == [s.score for s in registry.get_all_scores()]
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not a readable JSON registry"),
    ('{"format": "something-else", "version": 1, "backends": []}', "not a greenroute registry"),
    ("[1, 2, 3]", "not a greenroute registry"),
    ('{"format": "greenroute.registry", "version": 99, "backends": []}', "unsupported registry version 99"),
    ('{"format": "greenroute.registry", "version": 1, "backends": [{"backend_id": "a"}]}', "invalid registry entry"),
    ('{"format": "greenroute.registry", "version": 1, "backends": [{"backend_id": "a", "region": "r",'
     ' "renewable_pct": 500, "pue": 1.1}]}', "renewable_pct must be between 0 and 100"),
])
def test_corrupt_or_foreign_file_is_a_clear_error_and_left_untouched(tmp_path: Path, content: str,
                                                                     match: str) -> None:
    path = tmp_path / "registry.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        BackendGreenScoreRegistry.load(path)
    assert str(path) in str(info.value)
    assert path.read_text() == content


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BackendGreenScoreRegistry.load(tmp_path / "nope.json")


def test_failed_save_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    good = BackendGreenScoreRegistry()
    good.register_backend("a", "eu-north-1", 100, 1.1)
    good.save(path)
    before = path.read_text()

    class Unserialisable(BackendGreenScoreRegistry):
        def to_dict(self) -> dict[str, object]:
            return {"format": "greenroute.registry", "bad": object()}

    with pytest.raises(TypeError):
        Unserialisable().save(path)
    assert path.read_text() == before
    assert json.loads(before)["backends"][0]["backend_id"] == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_registry_is_thread_safe() -> None:
    registry = BackendGreenScoreRegistry()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                registry.register_backend(f"b{n}-{i % 5}", "eu-north-1", 100, 1.1)
                registry.update_carbon_intensity("eu-north-1", float(i))
                registry.get_all_scores()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(registry.backend_ids()) == 40
