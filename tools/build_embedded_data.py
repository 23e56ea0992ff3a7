"""Build greenroute's embedded grid dataset from the curated CSVs in ``shared/data``.

Run from the repository root::

    python tools/build_embedded_data.py ../shared/data

It writes three files under ``src/greenroute/data/``:

* ``regions.csv`` -- cloud region -> country, Electricity Maps zone and WattTime region
  (Cloud Carbon Footprint mapping, Apache-2.0; GSF if-plugins, MIT; self-derived assignments).
* ``region_intensity.csv`` -- annual average grid intensity per cloud region (ODbL-1.0 as a whole:
  most rows are Electricity Maps yearly data; Google's rows are Apache-2.0, named per row).
* ``zone_intensity.csv`` -- Electricity Maps yearly average per zone, for backends that name a zone
  explicitly (ODbL-1.0).

The output is deterministic (sorted rows, fixed columns), so ``tests/test_embedded_data.py`` can
check that the committed files are exactly what this script produces.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

ZONE_YEAR = "2024"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(rows: list[dict[str, str]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _short_source(source: str) -> str:
    if source.startswith("GoogleCloudPlatform/region-carbon-info"):
        return "Google Cloud region-carbon-info 2024"
    if "electricity-maps/yearly_2024" in source:
        return "Electricity Maps yearly 2024 via CO2.js"
    if source.startswith("cloud-carbon-footprint"):
        return "Cloud Carbon Footprint emission factor"
    return source


def build(shared_data: Path) -> dict[str, str]:
    """Return the output files' names and contents."""
    regions = _read(shared_data / "cloud_regions.csv")
    mapping = {(r["provider"], r["region"]): r for r in _read(shared_data / "region_grid_mapping.csv")}
    zones = _read(shared_data / "grid_zone_yearly_electricitymaps.csv")

    region_rows: list[dict[str, str]] = []
    intensity_rows: list[dict[str, str]] = []
    for row in sorted(regions, key=lambda r: (r["provider"], r["region"])):
        mapped = mapping.get((row["provider"], row["region"]), {})
        em_zone = row["em_zone"] or mapped.get("em_zone", "")
        region_rows.append(
            {
                "provider": row["provider"],
                "region": row["region"],
                "location": row["location"],
                "country_code": row["country_code"],
                "em_zone": em_zone,
                "watttime_region": mapped.get("watttime_region", ""),
            }
        )
        basis = "electricity_maps_zone_average" if row["grid_value_licence"] == "ODbL-1.0" else (
            "google_grid_average" if row["provider"] == "gcp" and "region-carbon-info" in row["source"]
            else "ccf_emission_factor"
        )
        intensity_rows.append(
            {
                "region": row["region"],
                "year": row["source_year"],
                "gco2e_per_kwh": row["grid_gco2e_per_kwh"],
                "grid_renewable_pct": row["em_renewable_pct_2024"],
                "basis": basis,
                "licence": row["grid_value_licence"],
                "source": _short_source(row["source"]),
            }
        )

    zone_rows = [
        {
            "zone": z["zone"],
            "zone_name": z["zone_name"],
            "year": z["year"],
            "gco2e_per_kwh": z["carbon_intensity_gco2e_per_kwh"],
            "renewable_pct": z["renewable_pct"],
            "carbon_free_pct": z["carbon_free_pct"],
        }
        for z in sorted(zones, key=lambda z: z["zone"])
        if z["year"] == ZONE_YEAR
    ]
    return {
        "regions.csv": _write(
            region_rows, ["provider", "region", "location", "country_code", "em_zone", "watttime_region"]
        ),
        "region_intensity.csv": _write(
            intensity_rows,
            ["region", "year", "gco2e_per_kwh", "grid_renewable_pct", "basis", "licence", "source"],
        ),
        "zone_intensity.csv": _write(
            zone_rows, ["zone", "zone_name", "year", "gco2e_per_kwh", "renewable_pct", "carbon_free_pct"]
        ),
    }


def main(argv: list[str]) -> int:
    shared = Path(argv[1] if len(argv) > 1 else "../shared/data")
    out = Path(__file__).resolve().parent.parent / "src" / "greenroute" / "data"
    for name, text in build(shared).items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
