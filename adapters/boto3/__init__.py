"""The boto3 front door: :class:`GreenS3Client`, a drop-in S3 client whose writes go through the router.

It holds no placement policy of its own: it shapes S3 requests and responses around
:class:`greenroute.GreenRouter` and passes every other call through to a real boto3 client.
``client`` holds the class; ``_shaping``, ``_multipart``, ``_reads`` and ``_passthrough`` its parts.
"""

from __future__ import annotations

from .client import GreenS3Client

__all__ = ["GreenS3Client"]
