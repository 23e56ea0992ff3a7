"""The real boto3 clients behind :class:`~greenroute.adapters.boto3.client.GreenS3Client`.

Each S3 backend gets one real client, built from its ``storage_options``; reads of objects on that
backend and their presigned URLs go to it. The default backend's client (or a plain
``boto3.client("s3")`` from the environment when no S3 backend is configured) takes every call that
is not routed, with its arguments unchanged. Also here: the client's ``meta`` (its own event
emitter over the default client's model), botocore's paginator and waiter models, and the transfer
config that keeps boto3's managed transfers running against the drop-in.
"""

from __future__ import annotations

import copy as python_copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import boto3.session  # type: ignore[import-untyped]
import botocore  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.hooks  # type: ignore[import-untyped]
import botocore.loaders  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

from greenroute.errors import ConfigError
from greenroute.model import Backend, CatalogEntry, Provider
from greenroute.router import GreenRouter

from ..storage._fsspec_target import split_root

__all__ = ["OBJECT_WAITERS", "UNSIGNABLE", "ClientMeta", "RealClients", "classic", "managed_transfer", "s3_model"]

#: Methods whose presigned URL would bypass placement and the catalog.
UNSIGNABLE = frozenset({
    "put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload",
    "abort_multipart_upload", "copy_object", "delete_object", "delete_objects", "list_objects_v2",
    "upload_part_copy",
})
#: Waiters that poll the drop-in itself (the others poll the default client).
OBJECT_WAITERS = ("bucket_exists", "bucket_not_exists", "object_exists", "object_not_exists")


@functools.cache
def s3_model(kind: str) -> dict[str, Any]:
    """botocore's S3 paginator (``paginators-1``) or waiter (``waiters-2``) definitions."""
    loaded: dict[str, Any] = botocore.loaders.create_loader().load_service_model("s3", kind)
    return loaded


def classic(config: Any) -> Any:
    """A copy of ``config`` that keeps boto3's Python transfer manager (the CRT one would bypass us)."""
    chosen = python_copy.copy(config) if config is not None else TransferConfig()
    chosen.preferred_transfer_client = "classic"
    return chosen


def managed_transfer(transfer: Callable[..., None]) -> Callable[..., None]:
    """boto3's managed transfer function ``transfer`` as a method of the drop-in, as boto3 injects it.

    boto3's own function runs against the drop-in, so its ``put_object``, multipart and
    ``get_object`` calls are routed and its ``TransferConfig``, ``Callback`` and errors are boto3's;
    only ``Config`` is replaced by a copy that keeps the classic transfer manager (:func:`classic`).
    """
    signature = inspect.signature(transfer)

    @functools.wraps(transfer)
    def method(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["Config"] = classic(bound.arguments.get("Config"))
        transfer(*bound.args, **bound.kwargs)

    return method


class ClientMeta:
    """The client's ``meta``: its own event emitter; the model, config and region of the default client."""

    def __init__(self, inner: Any) -> None:
        self.events = botocore.hooks.HierarchicalEmitter()
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def build_client(backend: Backend, session: Any, client_config: Any) -> Any:
    """A real boto3 S3 client for ``backend``, from its ``storage_options`` (s3fs's names or boto3's)."""
    options = dict(backend.storage_options)
    client_kwargs = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client_kwargs.pop("endpoint_url", None)
    region = (client_kwargs.pop("region_name", None) or options.get("region_name") or options.get("region")
              or backend.region)
    key = options.get("key") or options.get("aws_access_key_id") or client_kwargs.pop("aws_access_key_id", None)
    secret = (options.get("secret") or options.get("aws_secret_access_key")
              or client_kwargs.pop("aws_secret_access_key", None))
    token = (options.get("token") or options.get("aws_session_token")
             or client_kwargs.pop("aws_session_token", None))
    config_kwargs = dict(options.get("config_kwargs") or {})
    if options.get("anon"):
        config_kwargs["signature_version"] = botocore.UNSIGNED
    config = botocore.config.Config(**config_kwargs) if config_kwargs else None
    if client_config is not None:
        config = client_config if config is None else client_config.merge(config)
    if "use_ssl" in options:
        client_kwargs.setdefault("use_ssl", options["use_ssl"])
    chosen = boto3.session.Session(profile_name=options["profile"]) if options.get("profile") else session
    return chosen.client("s3", region_name=region, endpoint_url=endpoint, aws_access_key_id=key,
                         aws_secret_access_key=secret, aws_session_token=token, config=config, **client_kwargs)


class RealClients:
    """One real boto3 client per S3 backend of ``router``, and the default client.

    Args:
        router: The router whose backends are served.
        default_backend: The S3 backend whose client is the default (default: the best-scoring
            S3 backend now).
        session: The boto3 session that builds the clients.
        client_config: A ``botocore.config.Config`` merged into every client's configuration.

    Attributes:
        clients: Backend id -> its real client.
        default_backend_id: The default backend, or ``None`` when no S3 backend is configured.
        default: The client that serves pass-through calls.

    Raises:
        ConfigError: ``default_backend`` is not a configured S3 backend.
    """

    def __init__(self, router: GreenRouter, *, default_backend: str | None, session: Any,
                 client_config: Any) -> None:
        self._router = router
        s3_backends = [b for b in router.placement.backends if b.provider is Provider.S3]
        if default_backend is not None and default_backend not in {b.id for b in s3_backends}:
            raise ConfigError(f"{default_backend!r} is not a configured S3 backend", key="default_backend")
        self.clients: dict[str, Any] = {}
        try:
            for backend in s3_backends:
                self.clients[backend.id] = build_client(backend, session, client_config)
            self.default_backend_id: str | None = default_backend or self._best_s3(s3_backends)
            self.default: Any = (self.clients[self.default_backend_id] if self.default_backend_id is not None
                                 else session.client("s3", config=client_config))
        except BaseException:
            for client in self.clients.values():
                client.close()
            raise

    def _best_s3(self, s3_backends: Sequence[Backend]) -> str | None:
        if not s3_backends:
            return None
        ids = {b.id for b in s3_backends}
        for score in self._router.placement.get_green_scores():
            if score.backend_id in ids:
                return score.backend_id
        return s3_backends[0].id

    def physical(self, entry: CatalogEntry) -> tuple[Any, str, str] | None:
        """``(client, bucket, key)`` of an entry on an S3 backend, or ``None``."""
        client = self.clients.get(entry.backend_id)
        if client is None:
            return None
        bucket, prefix = split_root(self._router.placement.backend(entry.backend_id), ("s3", "s3a"))
        return client, bucket, f"{prefix}/{entry.path}" if prefix else entry.path

    def close(self) -> None:
        """Close every client."""
        for client in self.clients.values():
            client.close()
        if self.default_backend_id is None:
            self.default.close()
