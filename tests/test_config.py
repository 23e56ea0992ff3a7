"""Configuration: the documented shape loads, and every bad file gets a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroute import ConfigError, Objective, Provider, SignalKind, UnknownRegionError, load_config
from greenroute.config import find_config

GOOD = """
[placement]
signal = "average"                               # or "marginal"
sources = ["watttime", "electricitymaps", "embedded"]
objective = "score"                              # or "min_carbon"
cache_ttl_seconds = 300
allowed_countries = ["US", "SE"]
[placement.weights]
renewable = 0.4
carbon = 0.3
pue = 0.2
wue = 0.1

[sources.watttime]
username_env = "WATTTIME_USERNAME"
password_env = "WATTTIME_PASSWORD"

[sources.electricitymaps]
api_key_env = "ELECTRICITYMAPS_API_KEY"

[catalog]
url = "sqlite:///.greenroute/catalog.db"

[[backends]]
id = "aws-us-west-2"
provider = "s3"
region = "us-west-2"
root = "s3://acme-usw2/data"
renewable_pct = 96
pue = 1.12
[backends.storage_options]
endpoint_url = "http://127.0.0.1:9000"

[[backends]]
id = "lab"
provider = "file"
region = "stockholm-lab"
grid_zone = "SE-SE3"
country_code = "SE"
root = "file:///srv/greenroute"

[[backends]]
profile = "gcp-us-central1"
root = "gs://acme-usc1"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "greenroute.toml"
    path.write_text(text)
    return path


def test_the_documented_shape_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.placement.signal is SignalKind.AVERAGE
    assert cfg.placement.objective is Objective.SCORE
    assert cfg.placement.sources == ("watttime", "electricitymaps", "embedded")
    assert cfg.placement.policy.allowed_countries == frozenset({"US", "SE"})
    assert [b.id for b in cfg.backends] == ["aws-us-west-2", "lab", "gcp-us-central1"]
    usw2, lab, usc1 = cfg.backends
    assert usw2.provider is Provider.S3 and usw2.pue == 1.12 and usw2.renewable_pct == 96
    assert dict(usw2.storage_options) == {"endpoint_url": "http://127.0.0.1:9000"}
    assert lab.pue == 1.5 and lab.renewable_pct is None  # file default: seed on-prem PUE
    assert usc1.provider is Provider.GCS and usc1.pue == 1.10 and usc1.renewable_pct == 87
    assert cfg.sources["watttime"].options["username_env"] == "WATTTIME_USERNAME"
    service = cfg.build_service()
    decision = service.select_greenest_backend(None, 10**6)
    # The lab has the cleanest grid but no renewable figure of its own and PUE 1.5:
    # 0.4 * 60 (SE-SE3 grid renewable %) + 29.37 + 10 + 5 = 68.37 < us-west-2's 85.09.
    assert decision.backend_id == "aws-us-west-2"
    assert [a.backend_id for a in decision.alternatives] == ["gcp-us-central1", "lab"]
    assert decision.alternatives[1].score == pytest.approx(0.4 * 60 + 29.37 + 10 + 5)
    assert "watttime" not in {g.source.value for g in decision.grid_data.values()}


def test_no_file_means_the_pre_registered_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GREENROUTE_CONFIG", raising=False)
    cfg = load_config(None)
    assert cfg.path is None
    assert [b.id for b in cfg.backends] == [
        "aws-us-west-2", "aws-eu-north-1", "azure-westeurope", "gcp-us-central1", "on-prem"]


def test_lookup_order_explicit_then_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GREENROUTE_CONFIG", raising=False)
    cwd_file = _write(tmp_path, GOOD)
    assert find_config(None) == Path("greenroute.toml")
    env_file = tmp_path / "env.toml"
    env_file.write_text(GOOD)
    monkeypatch.setenv("GREENROUTE_CONFIG", str(env_file))
    assert find_config(None) == env_file
    assert find_config(cwd_file) == cwd_file
    monkeypatch.setenv("GREENROUTE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing.toml: config file named by \$GREENROUTE_CONFIG not found"):
        load_config(None)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


BACKEND = '[[backends]]\nid = "b"\nprovider = "s3"\nregion = "us-west-2"\nroot = "s3://bucket"\n'

BAD_FILES = [
    # (description, file text, key named, expected message part)
    ("not TOML", "[placement\nsignal = 1", None, "not valid TOML"),
    ("wrong type", '[placement]\ncache_ttl_seconds = "five minutes"\n' + BACKEND,
     "placement.cache_ttl_seconds", "expected a number, got 'five minutes'"),
    ("unknown provider", BACKEND.replace('"s3"', '"gcp"'), "backends[0].provider",
     "unknown provider (expected one of s3, gcs, azure, file, memory); did you mean 'gcs'?, got 'gcp'"),
    ("duplicate id", BACKEND + BACKEND, "backends[1].id", "duplicate backend id 'b' (first defined at backends[0])"),
    ("unknown region", BACKEND.replace("us-west-2", "us-west-9"), "backends[0].region",
     "unknown region 'us-west-9' (did you mean"),
    ("negative PUE", BACKEND + "pue = -1.2\n", "backends[0].pue",
     "expected a number >= 1 (PUE is at least 1.0 by definition), got -1.2"),
    ("percentage above 100", BACKEND + "renewable_pct = 120\n", "backends[0].renewable_pct",
     "expected a number <= 100, got 120"),
    ("unknown key (typo)", BACKEND + "renewable_pc = 50\n", "backends[0].renewable_pc",
     "unknown key; did you mean 'renewable_pct'?"),
    ("unknown top-level table", "[placment]\nsignal = 'average'\n" + BACKEND, "placment",
     "unknown key; did you mean 'placement'?"),
    ("bad signal", '[placement]\nsignal = "marginall"\n' + BACKEND, "placement.signal",
     "expected one of marginal, average; did you mean 'marginal'?"),
    ("unknown source", '[placement]\nsources = ["wattime"]\n' + BACKEND, "placement.sources[0]",
     "did you mean 'watttime'?"),
    ("secret in the file", '[sources.watttime]\npassword = "hunter2"\n' + BACKEND, "sources.watttime.password",
     "secrets are never read from the config file"),
    ("root of the wrong scheme", BACKEND.replace("s3://bucket", "gs://bucket"), "backends[0].root",
     "expected a s3 URL starting with s3://"),
    ("missing required key", '[[backends]]\nid = "b"\nprovider = "s3"\nroot = "s3://x"\n', "backends[0].region",
     "missing required key"),
    ("unknown grid zone", BACKEND + 'grid_zone = "SE-SE5"\n', "backends[0].grid_zone",
     "unknown region 'SE-SE5' (did you mean"),
    ("backends not an array of tables", 'backends = "all"\n', "backends", "expected an array of tables"),
    ("weight not a number", '[placement.weights]\ncarbon = true\n' + BACKEND, "placement.weights.carbon",
     "expected a number, got True"),
    ("bad country code", '[placement]\nallowed_countries = ["Sweden"]\n' + BACKEND,
     "placement.allowed_countries[0]", "expected an ISO 3166-1 alpha-2 code"),
    ("bad objective", '[placement]\nobjective = "cheap"\n' + BACKEND, "placement.objective",
     "expected one of score, min_carbon"),
    ("base_url not http", '[sources.electricitymaps]\nbase_url = "ftp://x"\n' + BACKEND,
     "sources.electricitymaps.base_url", "expected an http:// or https:// URL"),
]


@pytest.mark.parametrize(("text", "key", "message"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_get_clear_errors(tmp_path: Path, text: str, key: str | None, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    if key is not None:
        assert err.key is not None and err.key.startswith(key)
    assert message in str(err)
    assert str(err).startswith(f"{path}: ")
    assert "hunter2" not in str(err)


def test_unknown_region_error_is_a_config_error_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(UnknownRegionError) as info:
        load_config(_write(tmp_path, BACKEND.replace("us-west-2", "uswest2")))
    assert "us-west-2" in info.value.suggestions


def test_secrets_come_only_from_the_named_environment_variables(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(_write(tmp_path, '[sources.electricitymaps]\napi_key_env = "MY_EM_KEY"\n' + BACKEND))
    monkeypatch.delenv("MY_EM_KEY", raising=False)
    assert cfg.sources["electricitymaps"].env("api_key_env") is None
    monkeypatch.setenv("MY_EM_KEY", "k-123")
    assert cfg.sources["electricitymaps"].env("api_key_env") == "k-123"


def test_manual_source_and_carbon_overrides(tmp_path: Path) -> None:
    text = """
[placement]
sources = ["manual", "embedded"]
objective = "min_carbon"
[sources.manual]
intensities = { "us-west-2" = 50.0 }
[carbon]
energy_wh_per_byte = 2e-9
replication = { s3 = 3 }
""" + BACKEND
    cfg = load_config(_write(tmp_path, text))
    assert cfg.carbon_model.energy_wh_per_byte == 2e-9
    assert cfg.carbon_model.replication[Provider.S3] == 3.0
    decision = cfg.build_service().select_greenest_backend(None, 10**9)
    assert decision.grid.source.value == "manual"
    assert decision.grid.carbon_intensity_g_per_kwh == 50.0
    assert decision.write_gco2e == pytest.approx(10**9 * 2e-9 * 1.15 * 50 / 1000)  # fleet PUE 1.15
    assert decision.objective is Objective.MIN_CARBON
