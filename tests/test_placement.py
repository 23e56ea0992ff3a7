"""The placement service: eligibility, one signal per decision, objectives, and the decision itself."""

from __future__ import annotations

import pytest

from greenroute import (
    Backend,
    CarbonModel,
    ConfigError,
    GreenPlacementService,
    GridDataSource,
    GridSignals,
    ManualGridSource,
    NoEligibleBackendError,
    Objective,
    PlacementPolicy,
    Provider,
    SignalKind,
)
from greenroute.profiles import default_backends


def _service(**kwargs: object) -> GreenPlacementService:
    return GreenPlacementService(default_backends(), **kwargs)  # type: ignore[arg-type]


def test_default_profiles_choose_eu_north_1_with_sorted_alternatives() -> None:
    decision = _service().select_greenest_backend(None, 10_000_000)
    assert decision.backend_id == "aws-eu-north-1"
    assert decision.target_url == "memory://greenroute/aws-eu-north-1"
    assert [a.backend_id for a in decision.alternatives] == [
        "aws-us-west-2", "azure-westeurope", "gcp-us-central1", "on-prem"]
    scores = [a.score for a in decision.alternatives]
    assert scores == sorted(scores, reverse=True)
    assert all(a.score < decision.score.score and a.reason for a in decision.alternatives)
    assert "intensity 197 vs 21 g/kWh" in decision.alternatives[0].reason
    assert set(decision.grid_data) == {b.id for b in default_backends()}
    assert decision.signal is SignalKind.AVERAGE
    assert not decision.fallback and decision.fallback_reasons == ()
    assert decision.data_size_bytes == 10_000_000


def test_decision_carries_the_carbon_estimate_of_the_chosen_backend() -> None:
    decision = _service().select_greenest_backend(["aws-eu-north-1"], 2_500_000_000, retention_days=90)
    expected = CarbonModel().estimate(2_500_000_000, provider=Provider.MEMORY, pue=1.10,
                                      carbon_intensity_g_per_kwh=21.0, retention_days=90)
    assert decision.write_gco2e == pytest.approx(expected.write_gco2e)
    assert decision.at_rest_gco2e_per_month == pytest.approx(expected.at_rest_gco2e_per_month)
    assert decision.retention_gco2e == pytest.approx(expected.retention_gco2e)
    assert decision.write_gco2e == pytest.approx(2.5 * 1.10 * 21 / 1000)


def test_residency_filters_by_country_with_reasons() -> None:
    policy = PlacementPolicy(allowed_countries=frozenset({"US"}))
    decision = _service(policy=policy).select_greenest_backend(None, 1000)
    assert decision.backend_id == "aws-us-west-2"
    assert decision.ineligible["aws-eu-north-1"] == "country SE not allowed (residency)"
    assert decision.ineligible["azure-westeurope"] == "country NL not allowed (residency)"
    assert decision.ineligible["on-prem"].startswith("country unknown")
    assert {a.backend_id for a in decision.alternatives} == {"gcp-us-central1"}


def test_provider_and_region_filters() -> None:
    by_region = PlacementPolicy(allowed_regions=frozenset({"westeurope", "us-central1"}))
    assert _service(policy=by_region).select_greenest_backend(None, 1).backend_id == "azure-westeurope"
    on_prem = Backend(id="lab", provider=Provider.FILE, region="lab", root="file:///srv/lab", pue=1.3,
                      renewable_pct=100, grid_zone="SE-SE1", country_code="SE")
    service = GreenPlacementService([*default_backends(), on_prem],
                                    policy=PlacementPolicy(allowed_providers=frozenset({Provider.FILE})))
    decision = service.select_greenest_backend(None, 1)
    assert decision.backend_id == "lab"
    assert decision.ineligible["aws-eu-north-1"] == "provider memory not allowed"


def test_read_only_and_no_create_backends_are_never_chosen() -> None:
    ro = Backend(id="ro", provider=Provider.MEMORY, region="eu-north-1", root="memory://ro", pue=1.0,
                 renewable_pct=100, read_only=True)
    nc = Backend(id="nc", provider=Provider.MEMORY, region="eu-north-1", root="memory://nc", pue=1.0,
                 renewable_pct=100, no_create=True)
    service = GreenPlacementService([*default_backends(), ro, nc])
    decision = service.select_greenest_backend(None, 1)
    assert decision.backend_id == "aws-eu-north-1"  # ro and nc would score higher (PUE 1.0)
    assert decision.ineligible == {"ro": "read-only backend", "nc": "no-create backend (existing objects only)"}


def test_nothing_eligible_raises_with_each_reason() -> None:
    policy = PlacementPolicy(allowed_countries=frozenset({"JP"}))
    with pytest.raises(NoEligibleBackendError) as info:
        _service(policy=policy).select_greenest_backend(["aws-us-west-2", "on-prem", "typo"], 1)
    assert info.value.reasons == {
        "aws-us-west-2": "country US not allowed (residency)",
        "on-prem": "country unknown, so residency cannot be shown (set country_code)",
        "typo": "not a configured backend",
    }
    assert "typo: not a configured backend" in str(info.value)


def test_candidates_may_be_backend_values() -> None:
    extra = Backend(id="adhoc", provider=Provider.S3, region="ca-central-1", root="s3://b", pue=1.1,
                    renewable_pct=100)
    decision = _service().select_greenest_backend([extra, "aws-us-west-2"], 1)
    assert decision.backend_id == "adhoc"  # Quebec hydro beats Oregon
    assert [a.backend_id for a in decision.alternatives] == ["aws-us-west-2"]


def test_one_signal_per_decision_never_mixes_marginal_and_average() -> None:
    # A marginal source that knows only us-west-2 cannot serve the whole decision ...
    partial = ManualGridSource({"us-west-2": 800.0}, signal=SignalKind.MARGINAL)
    signals = GridSignals([partial], signal=SignalKind.MARGINAL)
    decision = _service(signals=signals).select_greenest_backend(None, 1)
    # ... so every candidate is scored on the embedded averages instead.
    assert decision.signal is SignalKind.AVERAGE
    assert {g.signal for g in decision.grid_data.values()} == {SignalKind.AVERAGE}
    assert {g.source for g in decision.grid_data.values()} == {GridDataSource.EMBEDDED}
    assert decision.fallback
    assert decision.fallback_reasons == ("manual: no value pinned for eu-north-1",
                                         "embedded: using annual averages for every candidate")


def test_a_source_that_covers_every_candidate_is_used_for_all() -> None:
    full = ManualGridSource({"us-west-2": 300.0, "eu-north-1": 790.0}, signal=SignalKind.MARGINAL)
    signals = GridSignals([full], signal=SignalKind.MARGINAL)
    decision = _service(signals=signals).select_greenest_backend(["aws-us-west-2", "aws-eu-north-1"], 1)
    assert decision.signal is SignalKind.MARGINAL
    assert {g.source for g in decision.grid_data.values()} == {GridDataSource.MANUAL}
    # On marginal rates the ranking flips: eu-north-1 is cleanest on average, dirty at the margin.
    assert decision.backend_id == "aws-us-west-2"
    assert not decision.fallback


def test_average_preference_never_switches_to_a_marginal_source() -> None:
    marginal = ManualGridSource({"us-west-2": 300.0, "eu-north-1": 790.0}, signal=SignalKind.MARGINAL)
    signals = GridSignals([marginal], signal=SignalKind.AVERAGE)
    decision = _service(signals=signals).select_greenest_backend(["aws-us-west-2", "aws-eu-north-1"], 1)
    assert decision.signal is SignalKind.AVERAGE
    assert {g.source for g in decision.grid_data.values()} == {GridDataSource.EMBEDDED}


def test_min_carbon_objective_counts_retention_at_rest() -> None:
    service = _service()
    by_score = service.select_greenest_backend(["aws-us-west-2", "azure-westeurope"], 10**9, retention_days=365)
    assert by_score.backend_id == "aws-us-west-2"
    s3 = Backend(id="s3-usw2", provider=Provider.S3, region="us-west-2", root="s3://x", pue=1.12, renewable_pct=100)
    az = Backend(id="az-weu", provider=Provider.AZURE, region="westeurope", root="az://x", pue=1.16,
                 renewable_pct=79)
    decision = service.select_greenest_backend([s3, az], 10**9, retention_days=365, objective="min_carbon")
    # per month: S3 6 copies * 1.12 * 197 g/kWh  >  Azure LRS 3 copies * 1.16 * 251 g/kWh
    assert decision.backend_id == "az-weu"
    assert decision.objective is Objective.MIN_CARBON
    alt = decision.alternatives[0]
    assert alt.backend_id == "s3-usw2"
    assert alt.write_gco2e + alt.retention_gco2e > decision.write_gco2e + decision.retention_gco2e
    assert "gCO2e vs" in alt.reason


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"data_size_bytes": -1}, "data_size_bytes"),
    ({"data_size_bytes": 1, "retention_days": -3}, "retention_days"),
    ({"data_size_bytes": 1, "objective": "cheapest"}, "unknown objective 'cheapest'"),
])
def test_bad_arguments_are_clear_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _service().select_greenest_backend(None, **kwargs)  # type: ignore[arg-type]


def test_backend_without_grid_data_is_ineligible_not_fatal() -> None:
    nowhere = Backend(id="mars", provider=Provider.MEMORY, region="olympus-mons", root="memory://m", pue=1.0)
    decision = _service().select_greenest_backend(["mars", "aws-us-west-2"], 1)
    assert decision.backend_id == "aws-us-west-2"
    assert decision.ineligible["mars"].startswith("not a configured backend")
    decision = _service().select_greenest_backend([nowhere, "aws-us-west-2"], 1)
    assert decision.ineligible["mars"].startswith("no grid data: unknown region 'olympus-mons'")


def test_scores_and_grid_lookups() -> None:
    service = _service()
    scores = service.get_green_scores()
    assert scores[0].backend_id == "aws-eu-north-1"
    assert service.registry.get_best_backend() == "aws-eu-north-1"
    assert service.get_grid_carbon_data("eu-west-2").grid_zone == "GB"
    assert service.get_grid_carbon_data("on-prem").grid_zone == "US-MIDA-PJM"  # the profile's zone


def test_backend_repr_hides_storage_options() -> None:
    b = Backend(id="s", provider=Provider.S3, region="us-east-1", root="s3://b", pue=1.1,
                storage_options={"key": "AKIA-secret", "secret": "hunter2"})
    assert "hunter2" not in repr(b) and "AKIA" not in repr(b)
    assert "key,secret" in repr(b)
    assert "storage_options" not in b.to_dict()


def test_memoised_decisions_follow_changes_in_backends_grid_and_health() -> None:
    pinned = ManualGridSource({"us-west-2": 100.0, "eu-north-1": 200.0})
    service = GreenPlacementService(
        [b for b in default_backends() if b.id in {"aws-us-west-2", "aws-eu-north-1"}],
        signals=GridSignals([pinned], cache_ttl_seconds=0))
    assert service.select_greenest_backend(None, 10).backend_id == "aws-us-west-2"
    assert service.select_greenest_backend(None, 10).backend_id == "aws-us-west-2"  # memo hit
    pinned.set("us-west-2", 900.0)  # a new grid value
    assert service.select_greenest_backend(None, 10).backend_id == "aws-eu-north-1"
    pinned.set("us-west-2", 100.0)
    north = service.backend("aws-eu-north-1")
    service.register_backend(Backend(id=north.id, provider=north.provider, region=north.region, root=north.root,
                                     pue=1.0, renewable_pct=100.0, read_only=True))  # re-registered
    decision = service.select_greenest_backend(None, 10)
    assert decision.backend_id == "aws-us-west-2"
    assert decision.ineligible == {"aws-eu-north-1": "read-only backend"}
    service.health.mark_failed("aws-us-west-2", "connection refused")
    with pytest.raises(NoEligibleBackendError):
        service.select_greenest_backend(["aws-eu-north-1"], 10)
    cooled = service.select_greenest_backend(None, 10)  # only us-west-2 left: tried anyway (half-open)
    assert cooled.backend_id == "aws-us-west-2"
    assert cooled.write_gco2e == pytest.approx(10 * 1e-9 * 1.12 * 100 / 1000)


def test_min_carbon_rankings_are_memoised_per_retention() -> None:
    # X writes cheaper (lower intensity) but keeps 6 copies at rest; Y keeps one. They cross at ~31 hours.
    x = Backend(id="x-s3", provider=Provider.S3, region="us-west-2", root="s3://x", pue=1.0, renewable_pct=0)
    y = Backend(id="y-mem", provider=Provider.MEMORY, region="eu-north-1", root="memory://y", pue=1.0,
                renewable_pct=0)
    pinned = ManualGridSource({"us-west-2": 100.0, "eu-north-1": 110.0})
    service = GreenPlacementService([x, y], signals=GridSignals([pinned]), objective=Objective.MIN_CARBON)
    for _ in range(2):  # the second round is served from the memos
        assert service.select_greenest_backend(None, 10**9).backend_id == "x-s3"
        assert service.select_greenest_backend(None, 10**9, retention_days=30).backend_id == "y-mem"
        # By score the lower intensity wins whatever the retention.
        assert service.select_greenest_backend(None, 10**9, retention_days=30, objective="score").backend_id == "x-s3"
        assert service.select_greenest_backend(None, 10**9, retention_days=30).backend_id == "y-mem"
        assert service.select_greenest_backend(None, 10**9, retention_days=0).backend_id == "x-s3"
    # Embedded data only: the same grid mapping every time, so the identity memo answers.
    embedded = GreenPlacementService([x, y], objective=Objective.MIN_CARBON)
    first = embedded.select_greenest_backend(None, 10**9, retention_days=1)
    again = embedded.select_greenest_backend(None, 10**9, retention_days=365)
    assert [first.backend_id, *(a.backend_id for a in first.alternatives)] == ["y-mem", "x-s3"]
    assert again.backend_id == "y-mem" and again.retention_gco2e > first.retention_gco2e


def test_alternatives_are_a_plain_frozen_field_built_once() -> None:
    import copy
    import dataclasses

    from greenroute import CarbonPlacementDecision

    service = _service()
    decision = service.select_greenest_backend(None, 10**9, retention_days=30)
    assert [f.name for f in dataclasses.fields(CarbonPlacementDecision)][:5] == [
        "decision_id", "backend", "target_url", "score", "alternatives"]
    alternatives = decision.alternatives
    assert type(alternatives) is tuple and len(alternatives) == 4
    assert decision.alternatives is alternatives  # built on the first read, kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.alternatives = ()  # type: ignore[misc]
    model = CarbonModel()
    for alt in alternatives:
        backend = service.backend(alt.backend_id)
        expected = model.estimate(10**9, provider=backend.provider, pue=backend.pue, retention_days=30,
                                  carbon_intensity_g_per_kwh=decision.grid_data[alt.backend_id].carbon_intensity_g_per_kwh)
        assert alt.write_gco2e == pytest.approx(expected.write_gco2e)
        assert alt.retention_gco2e == pytest.approx(expected.retention_gco2e)
        assert alt.chosen_gco2e == pytest.approx(decision.write_gco2e + decision.retention_gco2e)
        assert alt.chosen is decision.score
    # Copies, equality and repr see the built tuple, whether or not it was read before.
    unread = service.select_greenest_backend(None, 10**9, retention_days=30)
    assert "Alternative(backend_id='aws-us-west-2'" in repr(unread)
    for fresh in (service.select_greenest_backend(None, 10**9, retention_days=30), decision):
        restored = copy.copy(fresh)
        assert restored == fresh and restored.alternatives == alternatives
        replaced = dataclasses.replace(fresh, failovers=("aws-eu-north-1: timed out",))
        assert replaced.alternatives == alternatives and replaced.failovers != fresh.failovers
    single = service.select_greenest_backend(["on-prem"], 10)
    assert single.alternatives == () and single.to_dict()["alternatives"] == []


def test_decision_ids_are_unique_and_change_prefix_in_a_forked_child() -> None:
    import os

    service = _service()
    ids = [service.select_greenest_backend(None, 1).decision_id for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one decision, its id back through the pipe
        try:
            os.write(write, service.select_greenest_backend(None, 1).decision_id.encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child not in ids
    assert child[:16] != ids[0][:16]  # a fresh random prefix, not the parent's counter continued


def test_ineligible_reasons_are_read_only() -> None:
    decision = _service(policy=PlacementPolicy(allowed_countries=frozenset({"US"}))).select_greenest_backend(None, 1)
    with pytest.raises(TypeError):
        decision.ineligible["aws-us-west-2"] = "tampered"  # type: ignore[index]
    again = _service(policy=PlacementPolicy(allowed_countries=frozenset({"US"}))).select_greenest_backend(None, 1)
    assert "aws-us-west-2" not in again.ineligible and again.ineligible == decision.ineligible
