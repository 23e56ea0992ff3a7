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
  that filesystem is available;
* on S3 only, ``GreenRouter.open (late_metadata=copy)``: the router's stream on a backend that binds
  the late carbon values with a self-copy instead of object tags (the former way, for comparison).

And boto3's managed upload of a 1 GiB file on moto (kind ``s3 upload_file``), boto3's defaults (8 MiB
parts, 10 threads, the classic transfer manager on both sides):

* ``boto3 upload_file``: a plain ``boto3.client("s3")`` (the baseline);
* ``greenroute.boto3_client upload_file``: the drop-in, whose parts stream into the backend's own
  multipart upload.

Every case also reports the local disk it used: the peak size of its temporary folder (``TMPDIR``,
a fresh empty folder per case, sampled every 10 ms, counting the unlinked temporary files the process
holds open there) and the bytes it wrote to storage (``write_bytes`` of ``/proc/self/io``).

The target: peak RSS within 100 MB plus twice the block size. The smoke run streams 32 MiB.

    python benchmarks/streaming.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    Context,
    GiB,
    MiB,
    Section,
    boto3_kwargs,
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
#: On S3 only: the router's stream with ``late_metadata = "copy"``, binding its late values with the
#: self-copy that object tags replaced, measured beside them.
SELF_COPY = "GreenRouter.open (late_metadata=copy)"
UPLOAD_KIND = "s3 upload_file"
UPLOAD_MODES = ("boto3 upload_file", "greenroute.boto3_client upload_file")
#: The baseline of each kind's ratio.
BASELINES = {UPLOAD_KIND: UPLOAD_MODES[0]}


# -- the worker (a fresh process per case) -----------------------------------------------------------


class _FolderWatch:
    """The largest total size of this process's files under ``folder`` while it runs (sampled every 10 ms)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(0.01)

    def _size(self) -> int:
        """Files under the folder, and files this process holds open there unlinked (``TemporaryFile``)."""
        total, seen = 0, set()
        for root, _, files in os.walk(self.folder):
            for name in files:
                try:
                    st = os.stat(os.path.join(root, name))
                except FileNotFoundError:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        for fd in os.listdir("/proc/self/fd"):
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith(self.folder + "/"):
                    continue
                st = os.stat(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    def __enter__(self) -> _FolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _written_bytes() -> int:
    """The bytes this process has caused to be written to storage (``write_bytes``), or -1."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _measured(case: dict[str, Any], run: Any) -> dict[str, Any]:
    """Time ``run()`` with its peak RSS, its temporary folder's peak size and the bytes it wrote."""
    baseline = current_rss_mb()
    written = _written_bytes()
    with _FolderWatch(case["tmpdir"]) as watch:
        start = time.perf_counter_ns()
        run()
        elapsed = (time.perf_counter_ns() - start) / 1e9
    after = _written_bytes()
    return {"seconds": elapsed, "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
            "peak_tmp_mb": watch.peak / 1e6, "written_mb": (after - written) / 1e6 if written >= 0 else -1.0}


def upload_worker(case: dict[str, Any]) -> dict[str, Any]:
    """boto3's ``upload_file`` of ``case["source"]``, plain or through the drop-in."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    mode, size, key = case["mode"], int(case["size"]), case["key"]
    if mode == "boto3 upload_file":
        client: Any = boto3.client("s3", **case["boto3"])
        bucket, key = BUCKET, f"upload-direct/{key}"
        client.head_bucket(Bucket=bucket)  # connect before timing, as the drop-in's warm-up does
    else:
        import greenroute

        client = greenroute.boto3_client(config=case["config"])
        bucket = "upload"
        client.put_object(Bucket=bucket, Key=f"warm-{key}", Body=b"warm")  # builds the target and its client
        client.delete_object(Bucket=bucket, Key=f"warm-{key}")
    config = TransferConfig(preferred_transfer_client="classic")
    result = _measured(case, lambda: client.upload_file(case["source"], bucket, key, Config=config))
    client.delete_object(Bucket=bucket, Key=key)
    return {"mode": mode, "kind": case["kind"], "size": size, "mib_per_s": size / MiB / result["seconds"], **result}


def worker(case: dict[str, Any]) -> dict[str, Any]:
    """Stream ``case["size"]`` bytes the ``case["mode"]`` way and report time and memory."""
    os.makedirs(case["tmpdir"], exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = case["tmpdir"]  # the folder whose use is measured
    if case["mode"] in UPLOAD_MODES:
        return upload_worker(case)
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
    elif mode in ("GreenRouter.open", SELF_COPY):
        from greenroute import GreenRouter

        router = GreenRouter.from_config(case["config_copy" if mode == SELF_COPY else "config"])
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

    def stream() -> None:
        with opener() as f:
            left = size
            while left > 0:
                n = min(left, CHUNK)
                f.write(view[:n])
                left -= n

    result = _measured(case, stream)
    delete()
    return {"mode": mode, "kind": kind, "size": size, "mib_per_s": size / MiB / result["seconds"], **result}


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
    rounds = {"file": 1 if ctx.smoke else 2, "s3": 1, UPLOAD_KIND: 1}
    limit_mb = RSS_BASE_MB + 2 * BLOCK / 1e6
    section.params = {"size_bytes": size, "chunk_bytes": CHUNK, "block_size_bytes": BLOCK, "rounds": rounds,
                      "rss_limit_mb": limit_mb}
    section.table = [("kind", "backend"), ("mode", "write"), ("n", "n"), ("seconds", "time (s, median)"),
                     ("mib_per_s", "MiB/s (median)"), ("ratio", "time vs direct"),
                     ("baseline_rss_mb", "RSS before (MB)"), ("peak_rss_mb", "peak RSS (MB, max)"),
                     ("growth_mb", "peak - before (MB)"),
                     ("within_limit", f"≤ {limit_mb:.0f} MB"), ("peak_tmp_mb", "peak temp folder (MB)"),
                     ("written_mb", "written to local disk (MB)")]
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
            kinds["s3"]["config_copy"] = str(write_config(
                tmp / "s3-copy.toml", catalog_db=tmp / "s3-copy-catalog.db",
                backends=[{"id": "stream-s3", "provider": "s3", "region": "eu-north-1",
                           "root": f"s3://{BUCKET}/routed-copy",
                           "storage_options": {**options, "late_metadata": "copy"}}]))
            source = tmp / "upload-source.bin"
            with open(source, "wb") as out:  # random bytes, so nothing along the way can compress them
                for _ in range(size // (64 * MiB)):
                    out.write(os.urandom(64 * MiB))
                out.write(os.urandom(size % (64 * MiB)))
            kinds[UPLOAD_KIND] = {"config": kinds["s3"]["config"], "boto3": boto3_kwargs(ctx.moto_endpoint),
                                  "source": str(source)}
        else:
            section.skip("moto S3 streaming", ctx.moto_reason or "no moto server")
        for kind, base in kinds.items():
            modes = list(UPLOAD_MODES if kind == UPLOAD_KIND else MODES + ((SELF_COPY,) if kind == "s3" else ()))
            baseline_mode = BASELINES.get(kind, "direct")
            results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
            for i in range(rounds[kind]):
                for mode in list(modes) if i % 2 == 0 else modes[::-1]:
                    if mode not in modes:
                        continue
                    case = {**base, "mode": mode, "kind": kind, "size": size, "key": f"{i}.bin",
                            "tmpdir": str(tmp / "case-tmp" / f"{kind}-{mode}-{i}".replace(" ", "_").replace("/", "_"))}
                    print(f"  {kind} {mode} {size_label(size)} (round {i + 1})", flush=True)
                    try:
                        results[mode].append(_run_case_retrying(case, section))
                    except Exception as exc:  # noqa: BLE001 - reported; the other cases still count
                        modes.remove(mode)
                        del results[mode]
                        section.skip(f"{mode} streaming on {kind}", str(exc)[:200])
            if baseline_mode not in results:
                continue
            direct_s = _median([r["seconds"] for r in results[baseline_mode]])
            for mode in modes:
                rs = results[mode]
                seconds = _median([r["seconds"] for r in rs])
                peak = max(r["peak_rss_mb"] for r in rs)
                baseline = _median([r["baseline_rss_mb"] for r in rs])
                section.rows.append({"kind": kind, "mode": mode, "n": len(rs), "size": size_label(size),
                                     "seconds": seconds, "mib_per_s": size / MiB / seconds,
                                     "ratio": seconds / direct_s, "baseline_rss_mb": baseline,
                                     "peak_rss_mb": peak, "growth_mb": peak - baseline,
                                     "within_limit": None if kind == UPLOAD_KIND else peak <= limit_mb,
                                     "peak_tmp_mb": max(r["peak_tmp_mb"] for r in rs),
                                     "written_mb": max(r["written_mb"] for r in rs)})
    if not section.rows:
        raise RuntimeError("no streaming case ran: " + "; ".join(x["reason"] for x in section.skipped))
    streamed = [r for r in section.rows if r["kind"] != UPLOAD_KIND]
    worst = max(streamed, key=lambda r: r["peak_rss_mb"])
    section.target(f"{size_label(size)} streamed write: peak RSS ≤ 100 MB + 2 x block ({limit_mb:.0f} MB)",
                   goal=f"≤ {limit_mb:.0f} MB", measured="; ".join(
                       f"{r['kind']} {r['mode']} {r['peak_rss_mb']:.0f} MB" for r in streamed),
                   met=None if ctx.smoke else worst["peak_rss_mb"] <= limit_mb)
    uploads = {r["mode"]: r for r in section.rows if r["kind"] == UPLOAD_KIND}
    routed_upload = uploads.get(UPLOAD_MODES[1])
    if routed_upload is not None:
        section.target(f"{size_label(size)} upload_file through the drop-in: no local disk (temp folder ≤ 1 MB), "
                       "time ≤ 1.5 x plain boto3", goal="≤ 1 MB, ≤ 1.5x",
                       measured=f"peak temp folder {routed_upload['peak_tmp_mb']:.1f} MB, written "
                                f"{routed_upload['written_mb']:.1f} MB, {routed_upload['ratio']:.2f}x plain boto3 "
                                f"({routed_upload['seconds']:.1f} s vs "
                                f"{uploads[UPLOAD_MODES[0]]['seconds']:.1f} s), peak RSS "
                                f"{routed_upload['peak_rss_mb']:.0f} MB vs "
                                f"{uploads[UPLOAD_MODES[0]]['peak_rss_mb']:.0f} MB",
                       met=None if ctx.smoke else routed_upload["peak_tmp_mb"] <= 1.0 and routed_upload["ratio"] <= 1.5)
    section.notes.append(f"Block size {BLOCK // MiB} MiB on both sides; chunks of {CHUNK // MiB} MiB. Peak RSS is "
                         "the process's VmHWM, so it includes the interpreter and the libraries (RSS before); "
                         "peak - before is what the write itself held.")
    section.notes.append("upload_file: the drop-in sends each 8 MiB part to the backend's own multipart upload as "
                         "boto3 reads it (a part is held in memory while it is sent), placed at "
                         "create_multipart_upload on the file's size, so S3 gets the final carbon values with "
                         "CreateMultipartUpload and no copy follows. Before, it spooled every part to the local "
                         "temporary folder and wrote the object through the router at completion.")
    section.notes.append("On S3 a routed stream with no size hint learns its carbon values at close: they go on "
                         "the finished multipart object as object tags (one PutObjectTagging after "
                         "CompleteMultipartUpload). The late_metadata=copy row binds them the former way, with a "
                         "server-side copy of the object onto itself (for objects over s3fs's 150 MiB threshold a "
                         "multipart UploadPartCopy), which writes the object twice.")
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
