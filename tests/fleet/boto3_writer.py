"""One process of the boto3 fleet test: 4 threads writing through ``greenroute.boto3_client``.

Run as ``python boto3_writer.py CONFIG PROCESS COUNT START_AT OUT``. Process ``PROCESS`` writes ``COUNT``
objects in all (its threads share them out); about one in five goes to one of a few hot keys that
every process writes, the rest to keys of its own. It waits until the wall-clock time ``START_AT`` so
that all processes write at once, and records every acknowledged write (key, body, ETag, decision
backend) and every error in ``OUT`` as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import greenroute

HOT_KEYS = 12
THREADS = 4


def main() -> None:
    config, process, count, start_at, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), \
        sys.argv[5]
    s3 = greenroute.boto3_client(config=config)
    acked: list[dict[str, str]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(thread: int) -> None:
        for i in range(thread, count, THREADS):
            key = f"hot/key-{i % HOT_KEYS:02d}" if i % 5 == 0 else f"p{process}/t{thread}/obj-{i:04d}"
            body = f"{process}:{thread}:{i}:{uuid.uuid4().hex}".encode()
            try:
                response = s3.put_object(Bucket="fleet", Key=key, Body=body)
            except Exception as exc:  # every failure is recorded, and fails the test
                with lock:
                    errors.append(f"{key}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                acked.append({"key": key, "body": body.decode(), "etag": response["ETag"],
                              "backend": response["ResponseMetadata"].get("GreenrouteBackend", "")})

    time.sleep(max(0.0, start_at - time.time()))
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s3.close()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"acked": acked, "errors": errors}, f)


if __name__ == "__main__":
    main()
