"""A byte-counting TCP proxy on loopback, for measuring what a tool sends to and receives from a registry.

Every tool in the benchmark talks to the registry through one of these, so bytes are
counted the same way for all of them: raw TCP payload in each direction (HTTP
headers and bodies; no TLS on loopback). ``up`` counts client -> registry bytes,
``down`` registry -> client bytes.

Bytes are moved with :func:`os.splice` (socket -> pipe -> socket, no copy through
Python, the GIL released in the system call), so the proxy costs little CPU even
at several hundred MB/s; it falls back to ``recv``/``sendall`` where ``splice`` is
missing. One thread per direction per connection.

    proxy = CountingProxy(("127.0.0.1", 5000))   # listens on a free loopback port
    proxy.start()
    ...  # point a tool at proxy.host ("127.0.0.1:PORT")
    up, down = proxy.take()                      # bytes since the last take(), and reset
    proxy.stop()

Standard library only (no test code, no pytest).
"""

from __future__ import annotations

import errno
import os
import socket
import threading

CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported by Python 3.11's fcntl


class CountingProxy:
    """Forward TCP connections from ``127.0.0.1:<port>`` to ``target`` and count bytes both ways.

    Args:
        target: ``(host, port)`` of the upstream server (the registry).
        port: the port to listen on (``0``: a free one; read :attr:`port` after construction).

    Attributes:
        host: ``"127.0.0.1:PORT"``, the address tools should use.
        up / down: bytes forwarded client -> upstream / upstream -> client since the last :meth:`take`.
        connections: connections accepted since the last :meth:`take`.
    """

    def __init__(self, target: tuple[str, int], port: int = 0):
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.connections = 0
        #: ``(what, error)`` for every connection that ended with an error (upstream refused, reset, ...).
        self.errors: list[tuple[str, str]] = []
        self._stopped = threading.Event()
        self._socks: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)

    def start(self) -> "CountingProxy":
        """Start accepting connections (in a daemon thread); returns ``self``."""
        self._thread.start()
        return self

    def take(self) -> tuple[int, int]:
        """``(up, down)`` byte counts since the last call, and reset them to zero."""
        with self._lock:
            out = (self.up, self.down)
            self.up = self.down = self.connections = 0
        return out

    def stop(self) -> None:
        """Stop accepting and close every open connection."""
        self._stopped.set()
        # shutdown() wakes the thread blocked in accept(); close() alone would not, and that thread
        # could then accept on a new socket that reuses the descriptor number (another proxy's).
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError as e:
                self.errors.append(("connect", repr(e)))
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._socks.update((client, upstream))
            pair = _Pair(self, client, upstream)
            threading.Thread(target=pair.pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=pair.pump, args=(upstream, client, "down"), daemon=True).start()

    def _count(self, direction: str, n: int) -> None:
        with self._lock:
            if direction == "up":
                self.up += n
            else:
                self.down += n

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._socks.discard(s)


class _Pair:
    """One proxied connection: two pumps; the sockets close when both directions are done."""

    def __init__(self, proxy: CountingProxy, a: socket.socket, b: socket.socket):
        self.proxy = proxy
        self.a, self.b = a, b
        self._left = 2
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            if hasattr(os, "splice"):
                self._splice(src, dst, direction)
            else:
                self._copy(src, dst, direction)
        except OSError as e:
            self.proxy.errors.append((direction, repr(e)))
            # A reset on one side ends both directions.
            for s in (self.a, self.b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with self._lock:
                self._left -= 1
                done = self._left == 0
            if done:
                self.proxy._forget(self.a, self.b)
                self.a.close()
                self.b.close()

    def _copy(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = src.recv_into(buf)
            if not n:
                return
            self.proxy._count(direction, n)
            dst.sendall(view[:n])

    def _splice(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        r, w = os.pipe()
        try:
            try:
                import fcntl

                fcntl.fcntl(w, _F_SETPIPE_SZ, CHUNK)
            except OSError:
                pass
            sfd, dfd = src.fileno(), dst.fileno()
            while True:
                try:
                    n = os.splice(sfd, w, CHUNK)
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise
                if n == 0:
                    return
                # Counted before forwarding: once the peer has the bytes, the count includes them.
                self.proxy._count(direction, n)
                left = n
                while left:
                    left -= os.splice(r, dfd, left)
        finally:
            os.close(r)
            os.close(w)
