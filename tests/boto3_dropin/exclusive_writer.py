"""One process of the exclusive-create race: ``put_object(IfNoneMatch="*")`` through its own drop-in client.

Run as ``python exclusive_writer.py CONFIG PROCESS START_AT``. It builds ``greenroute.boto3_client``,
waits until the wall-clock time ``START_AT`` so that every process writes at once, puts
``race/key.bin`` with its own body, and prints one JSON line: ``{"process", "outcome", "status"}``
where ``outcome`` is ``"created"`` or the S3 error code.
"""

from __future__ import annotations

import json
import sys
import time

from botocore.exceptions import ClientError

import greenroute


def main() -> None:
    config, process, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s3 = greenroute.boto3_client(config=config)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        response = s3.put_object(Bucket="race", Key="key.bin", Body=f"process {process}".encode(), IfNoneMatch="*")
        outcome, status = "created", response["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as exc:
        outcome, status = exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
    finally:
        s3.close()
    print(json.dumps({"process": process, "outcome": outcome, "status": status}))


if __name__ == "__main__":
    main()
