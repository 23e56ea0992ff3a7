"""Benchmark 6: a 1 GiB streamed write, routed vs direct: throughput and peak memory.

Each case runs in a fresh subprocess (``streaming.py --worker CASE_JSON``), so the peak RSS
(``VmHWM`` from ``/proc/self/status``) of one case cannot pollute another. The worker sets up its
filesystem or router, notes its resident memory, then streams the object in 1 MiB chunks (one
random chunk, written over and over: the object is never held in memory) and closes it. The time
covers open to close, including the catalog commit and, on S3, the completion of the multipart
upload and the binding of the carbon metadata.

Cases, on a local directory and on moto S3, interleaved round by round:

* ``direct``: the backend's own fsspec filesystem, ``fs.open(path, "wb", block_size=16 MiB)``;
* ``GreenRouter.open``: ``router.open(path, "wb", block_size=16 MiB)``;
* ``greenroute://``: ``fsspec.open("greenroute://...", "wb", config=..., block_size=16 MiB)``, when
  that filesystem is available.

The target: peak RSS within 100 MB plus twice the block size. The smoke run streams 32 MiB.

    python benchmarks/streaming.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    Context,
    GiB,
    MiB,
    Section,
    create_bucket,
    current_rss_mb,
    moto_options,
    peak_rss_mb,
    section_main,
    setup_paths,
    size_label,
    temp_dir,
    write_config,
)

BUCKET = "gr-bench-stream"
CHUNK = 1 * MiB
BLOCK = 16 * MiB
RSS_BASE_MB = 100.0
MODES = ("direct", "GreenRouter.open", "greenroute://")


# -- the worker (a fresh process per case) -----------------------------------------------------------


def worker(case: dict[str, Any]) -> dict[str, Any]:
    """Stream ``case["size"]`` bytes the ``case["mode"]`` way and report time and memory."""
    mode, kind, size = case["mode"], case["kind"], int(case["size"])
    key = case["key"]
    delete: Any
    if mode == "direct":
        if kind == "s3":
            import s3fs

            fs: Any = s3fs.S3FileSystem(**case["storage_options"])
            path = f"{BUCKET}/direct/{key}"
        else:
            from fsspec.implementations.local import LocalFileSystem

            fs = LocalFileSystem(auto_mkdir=True)
            path = f"{case['root']}/direct/{key}"

        def opener() -> Any:
            return fs.open(path, "wb", block_size=BLOCK)

        def delete() -> None:
            fs.rm_file(path)
    elif mode == "GreenRouter.open":
        from greenroute import GreenRouter

        router = GreenRouter.from_config(case["config"])
        logical = f"stream/{key}"
        router.target(router.placement.backends[0].id)  # build the target (imports, client) before timing

        def opener() -> Any:
            return router.open(logical, "wb", block_size=BLOCK)

        def delete() -> None:
            router.delete(logical)
    else:
        import fsspec

        import greenroute.adapters.fsspec.filesystem  # noqa: F401 - fails clearly while it does not exist

        gfs = fsspec.filesystem("greenroute", config=case["config"])
        url = f"greenroute://grfs-stream/{key}"
        warm = f"greenroute://grfs-stream/warm-{key}"
        gfs.pipe_file(warm, b"warm")  # builds the target (imports, client) before the baseline, as the others do
        gfs.rm_file(warm)

        def opener() -> Any:
            return gfs.open(url, "wb", block_size=BLOCK)

        def delete() -> None:
            gfs.rm_file(url)
    chunk = os.urandom(CHUNK)
    view = memoryview(chunk)
    baseline = current_rss_mb()
    start = time.perf_counter_ns()
    with opener() as f:
        left = size
        while left > 0:
            n = min(left, CHUNK)
            f.write(view[:n])
            left -= n
    elapsed = (time.perf_counter_ns() - start) / 1e9
    peak = peak_rss_mb()
    delete()
    return {"mode": mode, "kind": kind, "size": size, "seconds": elapsed, "mib_per_s": size / MiB / elapsed,
            "baseline_rss_mb": baseline, "peak_rss_mb": peak}


def _run_case_retrying(case: dict[str, Any], section: Section) -> dict[str, Any]:
    """Run a case; once more in a fresh process if it fails (moto's multipart completion is flaky at 1 GiB)."""
    try:
        return _run_case(case, 600)
    except Exception as exc:  # noqa: BLE001 - retried once, and the retry is reported
        note = f"{case['kind']} {case['mode']} failed once and was run again: {str(exc)[:160]}"
        print(f"  {note}", flush=True)
        section.notes.append(note)
        return _run_case(case, 600)


def _run_case(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RuntimeError(tail[0])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the section ---------------------------------------------------------------------------------------


def run(ctx: Context) -> Section:
    setup_paths()
    section = Section("streaming", "6. Streaming write: throughput and peak RSS (fresh process per case)")
    size = 32 * MiB if ctx.smoke else 1 * GiB
    # One round on moto: a routed 1 GiB write takes over a minute there (see the notes).
    rounds = {"file": 1 if ctx.smoke else 2, "s3": 1}
    limit_mb = RSS_BASE_MB + 2 * BLOCK / 1e6
    section.params = {"size_bytes": size, "chunk_bytes": CHUNK, "block_size_bytes": BLOCK, "rounds": rounds,
                      "rss_limit_mb": limit_mb}
    section.table = [("kind", "backend"), ("mode", "write"), ("n", "n"), ("seconds", "time (s, median)"),
                     ("mib_per_s", "MiB/s (median)"), ("ratio", "time vs direct"),
                     ("baseline_rss_mb", "RSS before (MB)"), ("peak_rss_mb", "peak RSS (MB, max)"),
                     ("growth_mb", "peak - before (MB)"),
                     ("within_limit", f"≤ {limit_mb:.0f} MB")]
    with temp_dir("stream") as tmp:
        kinds: dict[str, dict[str, Any]] = {}
        (tmp / "file").mkdir()
        kinds["file"] = {"root": str(tmp / "file"), "config": str(write_config(
            tmp / "file.toml", catalog_db=tmp / "file-catalog.db",
            backends=[{"id": "stream-file", "provider": "file", "region": "eu-north-1",
                       "root": f"file://{tmp / 'file' / 'routed'}"}]))}
        if ctx.moto_endpoint is not None:
            create_bucket(ctx.moto_endpoint, BUCKET)
            options = moto_options(ctx.moto_endpoint)
            kinds["s3"] = {"storage_options": options, "config": str(write_config(
                tmp / "s3.toml", catalog_db=tmp / "s3-catalog.db",
                backends=[{"id": "stream-s3", "provider": "s3", "region": "eu-north-1",
                           "root": f"s3://{BUCKET}/routed", "storage_options": options}]))}
        else:
            section.skip("moto S3 streaming", ctx.moto_reason or "no moto server")
        for kind, base in kinds.items():
            modes = list(MODES)
            results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
            for i in range(rounds[kind]):
                for mode in list(modes) if i % 2 == 0 else modes[::-1]:
                    if mode not in modes:
                        continue
                    case = {**base, "mode": mode, "kind": kind, "size": size, "key": f"{i}.bin"}
                    print(f"  {kind} {mode} {size_label(size)} (round {i + 1})", flush=True)
                    try:
                        results[mode].append(_run_case_retrying(case, section))
                    except Exception as exc:  # noqa: BLE001 - reported; the other cases still count
                        modes.remove(mode)
                        del results[mode]
                        section.skip(f"{mode} streaming on {kind}", str(exc)[:200])
            if "direct" not in results:
                continue
            direct_s = _median([r["seconds"] for r in results["direct"]])
            for mode in modes:
                rs = results[mode]
                seconds = _median([r["seconds"] for r in rs])
                peak = max(r["peak_rss_mb"] for r in rs)
                baseline = _median([r["baseline_rss_mb"] for r in rs])
                section.rows.append({"kind": kind, "mode": mode, "n": len(rs), "size": size_label(size),
                                     "seconds": seconds, "mib_per_s": size / MiB / seconds,
                                     "ratio": seconds / direct_s, "baseline_rss_mb": baseline,
                                     "peak_rss_mb": peak, "growth_mb": peak - baseline,
                                     "within_limit": peak <= limit_mb})
    if not section.rows:
        raise RuntimeError("no streaming case ran: " + "; ".join(x["reason"] for x in section.skipped))
    worst = max(section.rows, key=lambda r: r["peak_rss_mb"])
    section.target(f"{size_label(size)} streamed write: peak RSS ≤ 100 MB + 2 x block ({limit_mb:.0f} MB)",
                   goal=f"≤ {limit_mb:.0f} MB", measured="; ".join(
                       f"{r['kind']} {r['mode']} {r['peak_rss_mb']:.0f} MB" for r in section.rows),
                   met=None if ctx.smoke else worst["peak_rss_mb"] <= limit_mb)
    section.notes.append(f"Block size {BLOCK // MiB} MiB on both sides; chunks of {CHUNK // MiB} MiB. Peak RSS is "
                         "the process's VmHWM, so it includes the interpreter and the libraries (RSS before); "
                         "peak - before is what the write itself held.")
    section.notes.append("On S3 a routed streamed write binds its carbon metadata at close with a server-side copy "
                         "of the object onto itself (CopyObject, or for objects over s3fs's 150 MiB threshold a "
                         "multipart UploadPartCopy), so the object is in effect written twice; on moto that "
                         "dominates the routed time.")
    return section


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--worker")
    known, _ = parser.parse_known_args()
    if known.worker:  # one measured case, in a fresh process of its own
        print(json.dumps(worker(json.loads(known.worker))))
        return 0
    return section_main(run, __doc__, "32 MiB", needs_moto=True)


if __name__ == "__main__":
    raise SystemExit(main())
