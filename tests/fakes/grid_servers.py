"""Fake grid-data APIs served over real HTTP on 127.0.0.1, for adapter and fallback tests.

Each fake is a :class:`http.server.ThreadingHTTPServer` on an ephemeral port, run in a daemon
thread, used as a context manager::

    with FakeWattTime() as wt:
        client = WattTimeGridApiStrategy(username=wt.username, password=wt.password, base_url=wt.url)
        ...
        assert wt.count("/login") == 1

They serve the paths and bodies documented in ``/work/shared/reference/grid-apis.md``:

* :class:`FakeWattTime`: ``/login`` (Basic auth -> ``{"token"}``), Bearer-checked ``/v3/forecast``,
  ``/v3/forecast/historical``, ``/v3/historical`` (tz-aware ``start``/``end``, at most 32 days),
  ``/v3/signal-index`` (percentile), ``/v3/region-from-loc`` (404 = no coverage), ``/v3/my-access``
  and ``/v3/maps``. Tokens expire after ``token_lifetime_seconds`` or on :meth:`FakeWattTime.expire_tokens`.
  With ``allowed_regions`` set it behaves like a basic account: 403 "Invalid scope" elsewhere.
* :class:`FakeElectricityMaps`: ``auth-token``-checked ``carbon-intensity/latest|history|forecast``,
  ``power-breakdown/latest|history`` and unauthenticated ``zones``, under both ``/v3`` and ``/v4``.
  Both fakes' forecasts can be set per region or zone (``set_forecast``), e.g. with a known minimum.
* :class:`FakeUkCarbonIntensity`: ``/intensity``, ``/regional``, ``/regional/regionid/{id}`` and
  ``/regional/postcode/{outward}``, no auth, errors as ``{"error": {"code", "message"}}``.

Faults (:class:`FaultKind`) are switched on per key with :meth:`FakeGridServer.inject`: the key is
the WattTime region, the Electricity Maps zone, or the UK region id (``"national"`` for
``/intensity``); ``"*"`` matches every key, and a path key (``"/login"``) matches that path. A fault
may be limited to a number of requests (``times``) and to one path. Hangs wait on an event that
:meth:`FakeGridServer.stop` sets, so shutting a fake down never waits for a hang to finish.

Every request is counted per path (thread-safe) and recorded, for assertions on call counts.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FakeElectricityMaps",
    "FakeGridServer",
    "FakeUkCarbonIntensity",
    "FakeWattTime",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]


class FaultKind(enum.StrEnum):
    """What a fake does instead of answering normally.

    ``EXPIRED_TOKEN``: 401 (WattTime: as for an expired token; Electricity Maps: "Token is
    invalid", also how it throttles bursts). ``INVALID_SCOPE``: 403 with the documented body
    (WattTime "Invalid scope"; Electricity Maps "Token unauthorized for zoneKey"). ``RATE_LIMITED``:
    429 without ``Retry-After``; ``RATE_LIMITED_RETRY_AFTER``: 429 with it. ``SERVER_ERROR``: 500.
    ``HANG``: wait ``hang_seconds`` (or until the fake stops), then answer normally.
    ``NULL_INTENSITY``: the value is ``null``. ``MALFORMED_JSON``: a truncated JSON body.
    ``UNEXPECTED_UNITS``: WattTime answers in ``kg_co2_per_mwh`` (the other fakes have no units
    field and answer normally). ``NO_COVERAGE``: WattTime 404 (region-from-loc's documented body),
    Electricity Maps 404, UK 400 "valid region ID".
    """

    EXPIRED_TOKEN = "expired_token"
    INVALID_SCOPE = "invalid_scope"
    RATE_LIMITED = "rate_limited"
    RATE_LIMITED_RETRY_AFTER = "rate_limited_retry_after"
    SERVER_ERROR = "server_error"
    HANG = "hang"
    NULL_INTENSITY = "null_intensity"
    MALFORMED_JSON = "malformed_json"
    UNEXPECTED_UNITS = "unexpected_units"
    NO_COVERAGE = "no_coverage"


@dataclass
class Fault:
    """One injected fault. ``times=None`` keeps it on until cleared."""

    kind: FaultKind
    times: int | None = None
    retry_after: str = "1"
    hang_seconds: float = 2.0
    path: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received (no header values are kept, so no credentials)."""

    method: str
    path: str
    params: Mapping[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Reply:
    """What a fake sends back."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def malformed(cls) -> Reply:
        return cls(200, b'{"data": [{"point_time": "2024-06-18T18:40:00+00:00", "value": 8',
                   {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Request:
    """A parsed request, handed to a fake's router."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _floor(dt: datetime, seconds: int) -> datetime:
    epoch = math.floor(dt.timestamp() / seconds) * seconds
    return datetime.fromtimestamp(epoch, UTC)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(method, parts.path, params, headers)
        fake._record(request)
        try:
            reply = fake._dispatch(request)
        except _Hung:
            return  # the fake is stopping: drop the connection
        except Exception as exc:  # a bug in the fake must show up as a 500, not a hung client
            reply = Reply.json(500, {"error": f"fake server bug: {type(exc).__name__}: {exc}"})
        if reply is None:
            return
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (timeout) or the fake is stopping
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of concurrent clients must not overflow the accept backlog

    def __init__(self, fake: FakeGridServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # connection resets are expected
        pass


class _Hung(Exception):
    """A hang was interrupted by stop()."""


class FakeGridServer:
    """Shared machinery: an HTTP server thread, fault injection, request counting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}
        self._counts: Counter[str] = Counter()
        self._key_counts: Counter[tuple[str, str]] = Counter()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening on an ephemeral port of 127.0.0.1."""
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop: interrupt hangs, stop accepting, close the socket."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the fake first"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- faults ---------------------------------------------------------------------------------

    def inject(self, key: str, kind: FaultKind, *, times: int | None = None, retry_after: str = "1",
               hang_seconds: float = 2.0, path: str | None = None) -> None:
        """Switch on ``kind`` for ``key`` (region, zone, ``"*"``, or a path like ``"/login"``).

        Args:
            key: What the fault applies to.
            kind: The fault.
            times: Apply it to this many requests, then answer normally (``None``: until cleared).
            retry_after: The ``Retry-After`` value for ``RATE_LIMITED_RETRY_AFTER``.
            hang_seconds: How long ``HANG`` waits.
            path: Apply it only to requests whose path ends with this.
        """
        with self._lock:
            self._faults.setdefault(key, []).append(
                Fault(kind, times=times, retry_after=retry_after, hang_seconds=hang_seconds, path=path))

    def clear_faults(self, key: str | None = None) -> None:
        """Switch off every fault (or those for ``key``)."""
        with self._lock:
            if key is None:
                self._faults.clear()
            else:
                self._faults.pop(key, None)

    def _take_fault(self, keys: Collection[str], path: str) -> Fault | None:
        with self._lock:
            for key in (*keys, path, "*"):
                for fault in self._faults.get(key, ()):
                    if fault.path is not None and not path.endswith(fault.path):
                        continue
                    if fault.times is not None:
                        if fault.times <= 0:
                            continue
                        fault.times -= 1
                    return fault
        return None

    def _hang(self, fault: Fault) -> None:
        if self._stopping.wait(fault.hang_seconds):
            raise _Hung

    # -- counting -------------------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self._counts[request.path] += 1
            key = self._key_of(request)
            if key is not None:
                self._key_counts[(request.path, key)] += 1
            self._requests.append(RecordedRequest(request.method, request.path, dict(request.params)))

    def _key_of(self, request: Request) -> str | None:
        return None

    def count(self, path: str | None = None, *, key: str | None = None) -> int:
        """Requests received for ``path`` (all paths when ``None``), optionally for one key."""
        with self._lock:
            if key is not None:
                return sum(n for (p, k), n in self._key_counts.items()
                           if k == key and (path is None or p == path))
            if path is None:
                return sum(self._counts.values())
            return self._counts[path]

    def counts(self) -> dict[str, int]:
        """Requests received per path."""
        with self._lock:
            return dict(self._counts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        with self._lock:
            return list(self._requests)

    def reset_counts(self) -> None:
        """Forget every counted and recorded request."""
        with self._lock:
            self._counts.clear()
            self._key_counts.clear()
            self._requests.clear()

    # -- routing --------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Reply | None:
        raise NotImplementedError

    def _common_fault(self, fault: Fault | None, error: Callable[[int, str], Reply]) -> Reply | None:
        """The reply for a fault that every fake treats alike (429, 500, hang), else ``None``."""
        if fault is None:
            return None
        if fault.kind is FaultKind.HANG:
            self._hang(fault)
            return None
        if fault.kind is FaultKind.RATE_LIMITED:
            return error(429, "Too Many Requests")
        if fault.kind is FaultKind.RATE_LIMITED_RETRY_AFTER:
            reply = error(429, "Too Many Requests")
            reply.headers["Retry-After"] = fault.retry_after
            return reply
        if fault.kind is FaultKind.SERVER_ERROR:
            return error(500, "Internal Server Error")
        if fault.kind is FaultKind.MALFORMED_JSON:
            return Reply.malformed()
        return None


# -- WattTime ------------------------------------------------------------------------------------

_WT_SIGNALS = ("co2_moer", "co2_aoer", "health_damage")
_INVALID_SCOPE = {
    "error": "Invalid query parameters",
    "message": "Invalid scope. You do not have sufficient access to this resource. Please contact "
               "WattTime for access. Please note that all users are allowed free access to CAISO_NORTH.",
}


def _validation_error(loc: list[str], msg: str) -> Reply:
    return Reply.json(422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]})


def _parse_aware(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class FakeWattTime(FakeGridServer):
    """A fake WattTime v3 API.

    Args:
        username: The account's name.
        password: The account's password.
        moer: Region -> current MOER in lbs/MWh (others get ``default_moer``).
        signal_index: Region -> current percentile (others get 50).
        allowed_regions: Regions the account may read; ``None`` allows all. ``{"CAISO_NORTH"}``
            makes it a basic account.
        locations: ``(latitude, longitude)`` -> region, for ``/v3/region-from-loc``.
        token_lifetime_seconds: Tokens older than this get 401.
        historical_period_seconds: Spacing of ``/v3/historical`` points.
    """

    def __init__(self, *, username: str = "gr-wt-user", password: str = "gr-wt-Pa55word!",
                 moer: Mapping[str, float] | None = None, default_moer: float = 1000.0,
                 signal_index: Mapping[str, float] | None = None,
                 allowed_regions: Collection[str] | None = None,
                 locations: Mapping[tuple[float, float], str] | None = None,
                 token_lifetime_seconds: float = 1800.0,
                 historical_period_seconds: int = 3600) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.moer: dict[str, float] = {"CAISO_NORTH": 812.4, "BPA": 1050.0, "SE": 1744.4, "PJM_DC": 1228.3,
                                       "IE": 1076.4, "UK": 900.0, "DE": 1612.6, "SGP": 769.4, **(moer or {})}
        self.default_moer = default_moer
        self.signal_index: dict[str, float] = dict(signal_index or {})
        self.allowed_regions = None if allowed_regions is None else set(allowed_regions)
        self.locations: dict[tuple[float, float], str] = dict(locations or {})
        self.token_lifetime_seconds = token_lifetime_seconds
        self.historical_period_seconds = historical_period_seconds
        self._tokens: dict[str, float] = {}
        self._expired: set[str] = set()
        self.forecasts: dict[str, list[float | None]] = {}

    # -- test controls --------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Expire every token issued so far (later logins get fresh ones)."""
        with self._lock:
            self._expired.update(self._tokens)

    @property
    def issued_tokens(self) -> list[str]:
        """Every token handed out, oldest first."""
        with self._lock:
            return list(self._tokens)

    def set_moer(self, region: str, lbs_per_mwh: float) -> None:
        """Set the MOER (lbs/MWh) served for ``region``."""
        with self._lock:
            self.moer[region] = lbs_per_mwh

    def set_forecast(self, region: str, lbs_per_mwh: list[float | None]) -> None:
        """Serve this ``/v3/forecast`` for ``region``: one value per 5-minute point from the current one.

        ``horizon_hours`` cuts it (12 points per hour; 0 gives the first point only). Without it the
        forecast starts at the current MOER and rises 0.25 lbs/MWh per point.
        """
        with self._lock:
            self.forecasts[region] = list(lbs_per_mwh)

    # -- routing --------------------------------------------------------------------------------

    def _key_of(self, request: Request) -> str | None:
        return request.params.get("region")

    def _error(self, status: int, message: str) -> Reply:
        return Reply.json(status, {"error": message})

    def _dispatch(self, request: Request) -> Reply | None:
        path = request.path
        region = request.params.get("region")
        fault = self._take_fault([region] if region else [], path)
        early = self._common_fault(fault, self._error)
        if early is not None:
            return early
        if path == "/login":
            return self._login(request)
        if not path.startswith("/v3/"):
            return Reply.json(404, {"detail": "Not Found"})
        if (fault is not None and fault.kind is FaultKind.EXPIRED_TOKEN) or not self._token_ok(request):
            return self._error(401, "Unauthorized")
        routes: dict[str, Callable[[Request, Fault | None], Reply]] = {
            "/v3/forecast": self._forecast,
            "/v3/forecast/historical": self._forecast_historical,
            "/v3/historical": self._historical,
            "/v3/signal-index": self._signal_index,
            "/v3/region-from-loc": self._region_from_loc,
            "/v3/my-access": self._my_access,
            "/v3/maps": self._maps,
        }
        route = routes.get(path)
        if route is None:
            return Reply.json(404, {"detail": "Not Found"})
        return route(request, fault)

    def _login(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        scheme, _, encoded = auth.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        if scheme.lower() != "basic" or user != self.username or password != self.password:
            return self._error(401, "Unauthorized")
        token = "wt-" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = time.monotonic()
        return Reply.json(200, {"token": token})

    def _token_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            issued = self._tokens.get(token)
            expired = token in self._expired
        return issued is not None and not expired and time.monotonic() - issued < self.token_lifetime_seconds

    def _check(self, request: Request, fault: Fault | None, *, needs_region: bool = True) -> Reply | None:
        """Parameter validation and scope: an error reply, or ``None`` to go on."""
        signal = request.params.get("signal_type")
        if signal is None:
            return _validation_error(["query", "signal_type"], "field required")
        if signal not in _WT_SIGNALS:
            return _validation_error(["query", "signal_type"], f"value is not a valid enumeration member: {signal}")
        region = request.params.get("region")
        if needs_region and not region:
            return _validation_error(["query", "region"], "field required")
        scoped_out = region is not None and self.allowed_regions is not None and region not in self.allowed_regions
        if scoped_out or (fault is not None and fault.kind is FaultKind.INVALID_SCOPE):
            return Reply.json(403, _INVALID_SCOPE)
        if needs_region and fault is not None and fault.kind is FaultKind.NO_COVERAGE:
            return Reply.json(404, {"error": "No coverage available for this region and signal_type",
                                    "region": region, "signal_type": signal})
        return None

    def _meta(self, region: str, signal: str, fault: Fault | None, *, period: int = 300,
              units: str = "lbs_co2_per_mwh") -> dict[str, Any]:
        if fault is not None and fault.kind is FaultKind.UNEXPECTED_UNITS:
            units = "kg_co2_per_mwh"
        return {"data_point_period_seconds": period, "region": region, "warnings": [], "signal_type": signal,
                "model": {"date": "2023-03-01"}, "units": units}

    def _value(self, region: str, fault: Fault | None) -> float | None:
        if fault is not None and fault.kind is FaultKind.NULL_INTENSITY:
            return None
        with self._lock:
            return self.moer.get(region, self.default_moer)

    def _forecast(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault)
        if bad is not None:
            return bad
        try:
            horizon = int(request.params.get("horizon_hours", "24"))
        except ValueError:
            return _validation_error(["query", "horizon_hours"], "value is not a valid integer")
        if not 0 <= horizon <= 72:
            return _validation_error(["query", "horizon_hours"], "ensure this value is between 0 and 72")
        region = request.params["region"]
        value = self._value(region, fault)
        start = _floor(_utcnow(), 300)
        count = 1 if horizon == 0 else horizon * 12
        with self._lock:
            series = self.forecasts.get(region)
        if series is not None:
            null = fault is not None and fault.kind is FaultKind.NULL_INTENSITY
            data = [{"point_time": _iso(start + timedelta(minutes=5 * i)), "value": None if null else v}
                    for i, v in enumerate(series[:count])]
        else:
            data = [{"point_time": _iso(start + timedelta(minutes=5 * i)),
                     "value": None if value is None else value + 0.25 * i} for i in range(count)]
        meta = self._meta(region, request.params["signal_type"], fault)
        meta.update({"generated_at_period_seconds": 300, "generated_at": _iso(start)})
        return Reply.json(200, {"data": data, "meta": meta})

    def _range(self, request: Request, max_span: timedelta) -> tuple[datetime, datetime] | Reply:
        start = _parse_aware(request.params.get("start"))
        end = _parse_aware(request.params.get("end"))
        if start is None or end is None:
            which = "start" if start is None else "end"
            return _validation_error(["query", which], "a timezone-aware ISO-8601 datetime is required")
        if end < start:
            return Reply.json(400, {"error": "Invalid query parameters", "message": "end must be after start"})
        if end - start > max_span:
            return Reply.json(400, {"error": "Invalid query parameters",
                                    "message": f"Time range too large; at most {max_span.days or 1} days"})
        return start, end

    def _historical(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault)
        if bad is not None:
            return bad
        span = self._range(request, timedelta(days=32))
        if isinstance(span, Reply):
            return span
        start, end = span
        region = request.params["region"]
        value = self._value(region, fault)
        step = self.historical_period_seconds
        t = datetime.fromtimestamp(math.ceil(start.timestamp() / step) * step, UTC)
        data = []
        while t <= end:
            data.append({"point_time": _iso(t), "value": value, "last_updated": _iso(t + timedelta(minutes=6)),
                         "imputed_data_used": False})
            t += timedelta(seconds=step)
        meta = self._meta(region, request.params["signal_type"], fault, period=step)
        meta["model"] = {"type": "binned_regression", "date": "2023-03-01"}
        return Reply.json(200, {"data": data, "meta": meta})

    def _forecast_historical(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault)
        if bad is not None:
            return bad
        span = self._range(request, timedelta(days=1))
        if isinstance(span, Reply):
            return span
        start, end = span
        region = request.params["region"]
        value = self._value(region, fault)
        horizon = int(request.params.get("horizon_hours", "24"))
        data = []
        t = _floor(start, 3600)
        while t <= end:
            data.append({"generated_at": _iso(t), "forecast": [
                {"point_time": _iso(t + timedelta(minutes=5 * i)), "value": value}
                for i in range(max(1, horizon * 12))]})
            t += timedelta(hours=1)
        meta = self._meta(region, request.params["signal_type"], fault)
        meta["generated_at_period_seconds"] = 300
        return Reply.json(200, {"data": data, "meta": meta})

    def _signal_index(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault)
        if bad is not None:
            return bad
        region = request.params["region"]
        with self._lock:
            value: float | None = self.signal_index.get(region, 50.0)
        if fault is not None and fault.kind is FaultKind.NULL_INTENSITY:
            value = None
        meta = self._meta(region, request.params["signal_type"], fault, units="percentile")
        if fault is not None and fault.kind is FaultKind.UNEXPECTED_UNITS:
            meta["units"] = "lbs_co2_per_mwh"
        return Reply.json(200, {"data": [{"point_time": _iso(_floor(_utcnow(), 300)), "value": value}],
                                "meta": meta})

    def _region_from_loc(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault, needs_region=False)
        if bad is not None:
            return bad
        lat_text, lon_text = request.params.get("latitude"), request.params.get("longitude")
        try:
            lat, lon = float(lat_text or ""), float(lon_text or "")
        except ValueError:
            return _validation_error(["query", "latitude"], "value is not a valid float")
        region = None if fault is not None and fault.kind is FaultKind.NO_COVERAGE else next(
            (r for (la, lo), r in self.locations.items() if abs(la - lat) < 1e-6 and abs(lo - lon) < 1e-6), None)
        if region is None:
            return Reply.json(404, {"error": "No coverage available for these coordinates and signal_type",
                                    "latitude": lat_text, "longitude": lon_text,
                                    "signal_type": request.params["signal_type"]})
        return Reply.json(200, {"region": region, "region_full_name": f"Fake region {region}",
                                "signal_type": request.params["signal_type"]})

    def _my_access(self, request: Request, fault: Fault | None) -> Reply:
        with self._lock:
            regions = sorted(self.allowed_regions if self.allowed_regions is not None else self.moer)
        model = {"model": "2023-03-01", "data_start": "2022-10-01", "train_start": "2019-01-01",
                 "train_end": "2022-12-31", "type": "binned_regression"}
        return Reply.json(200, {"signal_types": [{"signal_type": "co2_moer", "regions": [
            {"region": r, "region_full_name": f"Fake region {r}", "parent": r, "data_point_period_seconds": 300,
             "endpoints": [{"endpoint": "v3/forecast", "models": [model]},
                           {"endpoint": "v3/historical", "models": [model]}]} for r in regions]}]})

    def _maps(self, request: Request, fault: Fault | None) -> Reply:
        bad = self._check(request, fault, needs_region=False)
        if bad is not None:
            return bad
        return Reply.json(200, {"type": "FeatureCollection",
                                "meta": {"last_updated": "2024-01-01T00:00:00+00:00",
                                         "signal_type": request.params["signal_type"]},
                                "features": [{"type": "Feature",
                                              "properties": {"region": "CAISO_NORTH",
                                                             "region_full_name": "California ISO Northern"},
                                              "geometry": {"type": "MultiPolygon", "coordinates": [[[
                                                  [-122.5, 38.0], [-121.0, 38.0], [-121.0, 39.5],
                                                  [-122.5, 38.0]]]]}}]})


# -- Electricity Maps ----------------------------------------------------------------------------


@dataclass
class ZoneData:
    """What the Electricity Maps fake serves for one zone."""

    carbon_intensity: int | None
    renewable_pct: float
    fossil_free_pct: float


class FakeElectricityMaps(FakeGridServer):
    """A fake Electricity Maps API (v3, and v4 on the same handlers).

    Args:
        api_keys: Keys accepted in the ``auth-token`` header.
        zones: Zone -> values (added to, and overriding, a default table that includes
            ``US-NW-PACW`` for us-west-2 and ``SE-SE3`` for eu-north-1).
        locations: ``(lat, lon)`` -> zone, for ``lat``/``lon`` queries.
        is_estimated: The ``isEstimated`` flag served.
        emission_factor_type: The ``emissionFactorType`` served by default.
    """

    DEFAULT_ZONES: Mapping[str, tuple[int, float, float]] = {
        "US-NW-PACW": (118, 62.0, 66.0), "SE-SE3": (27, 71.0, 98.0), "GB": (182, 48.0, 64.0),
        "DE": (371, 55.0, 58.0), "US-MIDA-PJM": (392, 9.0, 42.0), "IE": (401, 40.0, 41.0),
        "SG": (489, 2.0, 2.0), "NL": (298, 48.0, 51.0), "FI": (62, 52.0, 92.0), "FR": (33, 27.0, 95.0),
        "US-CAL-CISO": (211, 56.0, 64.0), "US-MIDW-MISO": (455, 25.0, 40.0),
    }

    def __init__(self, *, api_keys: Collection[str] = ("gr-em-key-3f9c2b7d",),
                 zones: Mapping[str, ZoneData] | None = None,
                 locations: Mapping[tuple[float, float], str] | None = None,
                 is_estimated: bool = True, emission_factor_type: str = "lifecycle") -> None:
        super().__init__()
        self.api_keys = set(api_keys)
        self.zones: dict[str, ZoneData] = {z: ZoneData(*v) for z, v in self.DEFAULT_ZONES.items()}
        self.zones.update(zones or {})
        self.locations = dict(locations or {})
        self.is_estimated = is_estimated
        self.emission_factor_type = emission_factor_type
        self.forecasts: dict[str, list[int | None]] = {}

    @property
    def api_key(self) -> str:
        """One accepted key."""
        return sorted(self.api_keys)[0]

    def set_intensity(self, zone: str, value: int | None) -> None:
        """Set the ``carbonIntensity`` served for ``zone``."""
        with self._lock:
            current = self.zones.get(zone, ZoneData(None, 0.0, 0.0))
            self.zones[zone] = ZoneData(value, current.renewable_pct, current.fossil_free_pct)

    def set_forecast(self, zone: str, values: list[int | None]) -> None:
        """Serve this ``carbon-intensity/forecast`` for ``zone``: one hourly value from the next hour.

        Without it the forecast is the zone's current intensity plus 1 g per hour ahead, for 24 hours.
        """
        with self._lock:
            self.forecasts[zone] = list(values)

    def _key_of(self, request: Request) -> str | None:
        return request.params.get("zone")

    def _error(self, status: int, message: str) -> Reply:
        return Reply.json(status, {"error": message})

    def _dispatch(self, request: Request) -> Reply | None:
        path = request.path
        for prefix in ("/v3/", "/v4/"):
            if path.startswith(prefix):
                endpoint = path[len(prefix):]
                break
        else:
            return self._error(404, "Not found")
        if endpoint == "zones":
            return self._zones(request)
        zone = request.params.get("zone")
        if zone is None and "lat" in request.params and "lon" in request.params:
            try:
                lat, lon = float(request.params["lat"]), float(request.params["lon"])
            except ValueError:
                return self._error(400, "lat and lon must be numbers")
            zone = next((z for (la, lo), z in self.locations.items()
                         if abs(la - lat) < 1e-6 and abs(lo - lon) < 1e-6), None)
            if zone is None:
                return self._error(404, f"No zone found for lat={lat} lon={lon}")
        fault = self._take_fault([zone] if zone else [], path)
        early = self._common_fault(fault, self._error)
        if early is not None:
            return early
        if (fault is not None and fault.kind is FaultKind.EXPIRED_TOKEN) or \
                request.headers.get("auth-token") not in self.api_keys:
            return self._error(401, "Token is invalid")
        if zone is None:
            return self._error(400, "Please provide a zone or lat/lon")
        if fault is not None and fault.kind is FaultKind.INVALID_SCOPE:
            return self._error(403, f"Token unauthorized for zoneKey {zone}")
        with self._lock:
            data = self.zones.get(zone)
        if data is None or (fault is not None and fault.kind is FaultKind.NO_COVERAGE):
            return self._error(404, f"Zone '{zone}' does not exist")
        intensity = None if fault is not None and fault.kind is FaultKind.NULL_INTENSITY else data.carbon_intensity
        factor = request.params.get("emissionFactorType", self.emission_factor_type)
        now = _floor(_utcnow(), 3600)
        if endpoint == "carbon-intensity/latest":
            return Reply.json(200, self._ci_item(zone, intensity, now, factor))
        if endpoint == "carbon-intensity/history":
            return Reply.json(200, {"zone": zone, "history": [
                self._ci_item(zone, intensity, now - timedelta(hours=h), factor) for h in range(24, 0, -1)]})
        if endpoint == "carbon-intensity/forecast":
            with self._lock:
                series = self.forecasts.get(zone)
            if series is None:
                series = [None if intensity is None else intensity + h for h in range(1, 25)]
            elif intensity is None:
                series = [None] * len(series)
            return Reply.json(200, {"zone": zone, "updatedAt": _iso(now), "forecast": [
                {"carbonIntensity": value, "datetime": _iso(now + timedelta(hours=h))}
                for h, value in enumerate(series, start=1)]})
        if endpoint == "power-breakdown/latest":
            return Reply.json(200, self._pb_item(zone, data, now))
        if endpoint == "power-breakdown/history":
            return Reply.json(200, {"zone": zone, "history": [
                self._pb_item(zone, data, now - timedelta(hours=h)) for h in range(24, 0, -1)]})
        return self._error(404, "Endpoint not available")

    def _ci_item(self, zone: str, intensity: int | None, when: datetime, factor: str) -> dict[str, Any]:
        return {"zone": zone, "carbonIntensity": intensity, "datetime": _iso(when),
                "updatedAt": _iso(when + timedelta(minutes=48)), "createdAt": _iso(when - timedelta(days=3)),
                "emissionFactorType": factor, "isEstimated": self.is_estimated,
                "estimationMethod": "TIME_SLICER_AVERAGE" if self.is_estimated else None}

    def _pb_item(self, zone: str, data: ZoneData, when: datetime) -> dict[str, Any]:
        return {"zone": zone, "datetime": _iso(when), "updatedAt": _iso(when + timedelta(minutes=48)),
                "createdAt": _iso(when - timedelta(days=3)),
                "powerConsumptionBreakdown": {"nuclear": 440, "wind": 6998, "solar": 0, "hydro": 2870, "gas": 10334},
                "powerProductionBreakdown": {"nuclear": None, "wind": 6415, "solar": 0, "gas": 9602},
                "powerImportBreakdown": {}, "powerExportBreakdown": {},
                "fossilFreePercentage": data.fossil_free_pct, "renewablePercentage": data.renewable_pct,
                "powerConsumptionTotal": 52901, "powerProductionTotal": 48570, "powerImportTotal": 5798,
                "powerExportTotal": 1467, "isEstimated": self.is_estimated,
                "estimationMethod": "TIME_SLICER_AVERAGE" if self.is_estimated else None}

    def _zones(self, request: Request) -> Reply:
        authed = request.headers.get("auth-token") in self.api_keys
        with self._lock:
            zones = {z: {"zoneName": f"Fake zone {z}",
                         **({"access": ["carbon-intensity/latest", "carbon-intensity/history",
                                        "carbon-intensity/forecast", "power-breakdown/latest"]} if authed else {})}
                     for z in sorted(self.zones)}
        return Reply.json(200, zones)


# -- UK Carbon Intensity -------------------------------------------------------------------------

_UK_REGIONS = {1: ("Scottish Hydro Electric Power Distribution", "North Scotland"),
               2: ("SP Distribution", "South Scotland"), 3: ("Electricity North West", "North West England"),
               4: ("NPG North East", "North East England"), 5: ("NPG Yorkshire", "Yorkshire"),
               6: ("SP Manweb", "North Wales & Merseyside"), 7: ("WPD South Wales", "South Wales"),
               8: ("WPD West Midlands", "West Midlands"), 9: ("WPD East Midlands", "East Midlands"),
               10: ("UKPN East", "East England"), 11: ("WPD South West", "South West England"),
               12: ("SSE South", "South England"), 13: ("UKPN London", "London"),
               14: ("UKPN South East", "South East England"), 15: ("England", "England"),
               16: ("Scotland", "Scotland"), 17: ("Wales", "Wales")}
_UK_MIX = [{"fuel": "gas", "perc": 43.6}, {"fuel": "coal", "perc": 0.7}, {"fuel": "biomass", "perc": 4.2},
           {"fuel": "nuclear", "perc": 17.6}, {"fuel": "hydro", "perc": 2.2}, {"fuel": "imports", "perc": 6.5},
           {"fuel": "other", "perc": 0.3}, {"fuel": "wind", "perc": 6.8}, {"fuel": "solar", "perc": 18.1}]


class FakeUkCarbonIntensity(FakeGridServer):
    """A fake UK Carbon Intensity API (no auth).

    Args:
        national: ``{"forecast": ..., "actual": ...}`` for ``/intensity`` (``actual`` may be ``None``).
        regional: Region id -> forecast gCO2/kWh (others get 150 + id).
    """

    def __init__(self, *, national: Mapping[str, int | None] | None = None,
                 regional: Mapping[int, int] | None = None) -> None:
        super().__init__()
        self.national: dict[str, int | None] = {"forecast": 266, "actual": 263, **(national or {})}
        self.regional: dict[int, int] = {13: 212, **(regional or {})}

    def _key_of(self, request: Request) -> str | None:
        if request.path == "/intensity":
            return "national"
        if request.path.startswith("/regional/regionid/"):
            return request.path.rsplit("/", 1)[-1]
        return None

    def _error(self, status: int, message: str) -> Reply:
        code = {400: "400 Bad Request", 429: "429 Too Many Requests", 500: "500 Internal Server Error"}.get(
            status, str(status))
        return Reply.json(status, {"error": {"code": code, "message": message}})

    @staticmethod
    def _index(value: int | None) -> str | None:
        if value is None:
            return None
        for limit, name in ((50, "very low"), (130, "low"), (210, "moderate"), (310, "high")):
            if value < limit:
                return name
        return "very high"

    def _period(self) -> tuple[str, str]:
        start = _floor(_utcnow(), 1800)
        return start.strftime("%Y-%m-%dT%H:%MZ"), (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ")

    def _dispatch(self, request: Request) -> Reply | None:
        key = self._key_of(request)
        fault = self._take_fault([key] if key else [], request.path)
        early = self._common_fault(fault, self._error)
        if early is not None:
            return early
        null = fault is not None and fault.kind is FaultKind.NULL_INTENSITY
        if fault is not None and fault.kind is FaultKind.NO_COVERAGE:
            return self._error(400, "Please enter a valid region ID i.e. 1-17. For more information visit "
                                    "https://carbon-intensity.github.io/api-definitions/#intensity")
        start, end = self._period()
        path = request.path.rstrip("/")
        if path == "/intensity":
            forecast = None if null else self.national["forecast"]
            actual = None if null else self.national["actual"]
            return Reply.json(200, {"data": [{"from": start, "to": end, "intensity": {
                "forecast": forecast, "actual": actual, "index": self._index(actual or forecast)}}]})
        if path == "/regional":
            return Reply.json(200, {"data": [{"from": start, "to": end, "regions": [
                self._region_entry(rid, null, nested=False) for rid in sorted(_UK_REGIONS)]}]})
        if path.startswith("/regional/regionid/"):
            try:
                rid = int(path.rsplit("/", 1)[-1])
            except ValueError:
                rid = -1
            if rid not in _UK_REGIONS:
                return self._error(400, "Please enter a valid region ID i.e. 1-17. For more information visit "
                                        "https://carbon-intensity.github.io/api-definitions/#intensity")
            return Reply.json(200, {"data": [self._region_entry(rid, null, nested=True)]})
        if path.startswith("/regional/postcode/"):
            postcode = path.rsplit("/", 1)[-1].upper()
            entry = self._region_entry(13, null, nested=True)
            entry["postcode"] = postcode
            return Reply.json(200, {"data": [entry]})
        return self._error(400, "Invalid path. For more information visit https://carbon-intensity.github.io/api-definitions")

    def _region_entry(self, rid: int, null: bool, *, nested: bool) -> dict[str, Any]:
        dno, short = _UK_REGIONS[rid]
        forecast = None if null else self.regional.get(rid, 150 + rid)
        period = {"intensity": {"forecast": forecast, "index": self._index(forecast)}, "generationmix": _UK_MIX}
        start, end = self._period()
        if nested:
            return {"regionid": rid, "dnoregion": dno, "shortname": short,
                    "data": [{"from": start, "to": end, **period}]}
        return {"regionid": rid, "dnoregion": dno, "shortname": short, **period}
