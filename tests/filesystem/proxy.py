"""A loopback TCP proxy in front of one local HTTP server that counts the requests in flight.

It proves concurrency without timing anything: a request is *in flight* on a connection from the
first byte the client sends until the first byte of the answer comes back (the HTTP clients here
never pipeline), and :attr:`CountingProxy.max_in_flight` is the most that ever were at once. A
sequential loop of calls can never get past 1.

``gate=N`` holds every request at the proxy until N are in flight at once; from then on the gate
stays open. A client that really sends N requests at once opens it at once. A sequential one would
wait ``gate_timeout`` seconds per request, so the timeout only ever matters for a failing test (it is
shorter than s3fs's 15 s read timeout, so that a held request is not retried and counted twice).

``on_request(n)`` runs, one call at a time, before the n-th request is forwarded: a test can kill
the server behind the proxy there, at a known point of a run (the proxy then refuses new
connections, as the dead server would).

Traffic goes only to the upstream loopback address it is given.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CountingProxy"]

_CHUNK = 64 * 1024


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket
    waiting: bool = False  # a request was sent and its answer has not started yet


class CountingProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream`` (``"http://127.0.0.1:PORT"``), counting requests in flight.

    Args:
        upstream: The server's endpoint URL (loopback).
        gate: Hold requests until this many are in flight at once (0: no gate).
        gate_timeout: How long one request waits for the gate before going on anyway.
        on_request: Called with the request's number before it is forwarded.
    """

    def __init__(self, upstream: str, *, gate: int = 0, gate_timeout: float = 10.0,
                 on_request: Callable[[int], None] | None = None) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the proxy only forwards to loopback, not {host!r}")
        self._upstream = (host, int(port))
        self.gate = gate
        self.gate_timeout = gate_timeout
        self.on_request = on_request
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate_opened = False
        self.gate_timeouts = 0
        self._cond = threading.Condition()
        self._hook = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget the counts (and close the gate again), e.g. between two measured phases."""
        with self._cond:
            self.requests = self.gate_timeouts = 0
            self.max_in_flight = self.in_flight
            self.gate_opened = False

    def close(self) -> None:
        """Stop accepting (new connections are refused) and drop every open connection."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the server is gone: so is this connection
                continue
            conn = _Connection(client, upstream)
            self._sockets += [client, upstream]
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._answers, args=(conn,), daemon=True).start()

    def _requests(self, conn: _Connection) -> None:
        try:
            while True:
                data = conn.client.recv(_CHUNK)
                if not data:
                    break
                number = self._started(conn)
                if number is not None:
                    if self.on_request is not None:
                        with self._hook:
                            self.on_request(number)
                    self._wait_for_gate()
                conn.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._finished(conn)
            with contextlib.suppress(OSError):
                conn.upstream.shutdown(socket.SHUT_WR)

    def _answers(self, conn: _Connection) -> None:
        try:
            while True:
                data = conn.upstream.recv(_CHUNK)
                if not data:
                    break
                self._finished(conn)
                conn.client.sendall(data)
        except OSError:
            pass
        finally:
            self._finished(conn)
            for sock in (conn.client, conn.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def _started(self, conn: _Connection) -> int | None:
        """Count a new request on ``conn`` (its number), or ``None`` if one is already in flight there."""
        with self._cond:
            if conn.waiting:
                return None
            conn.waiting = True
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            return self.requests

    def _finished(self, conn: _Connection) -> None:
        with self._cond:
            if conn.waiting:
                conn.waiting = False
                self.in_flight -= 1

    def _wait_for_gate(self) -> None:
        if not self.gate:
            return
        with self._cond:
            if self._cond.wait_for(lambda: self.gate_opened or self.in_flight >= self.gate, self.gate_timeout):
                self.gate_opened = True
                self._cond.notify_all()
            else:
                self.gate_timeouts += 1
