"""A TCP proxy on loopback that forwards to a real server and can cut connections on demand:
"the network failed mid-upload", with no mock of the server or the client library."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.servers.common import free_port

__all__ = ["FaultProxy"]


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0 makes close() send RST: the peer sees "connection reset", as on a real fault.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._cut_after: int | None = None
        self._cuts_left = 0
        self.connections = 0
        self.cuts = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cut_next(self, connections: int = 1, after_bytes: int = 0) -> None:
        """Reset each of the next ``connections`` connections once ``after_bytes`` bytes have
        gone from the client to the server (0: as soon as the client sends anything)."""
        with self._lock:
            self._cuts_left = connections
            self._cut_after = after_bytes

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cut_after = self._cut_after if self._cuts_left > 0 else None
                if cut_after is not None:
                    self._cuts_left -= 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _reset(client)
                continue
            state = {"sent": 0, "cut": False}
            pair = (client, upstream)
            threading.Thread(
                target=self._pump, args=(client, upstream, cut_after, state, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, None, state, pair), daemon=True
            ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        cut_after: int | None,
        state: dict[str, int | bool],
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                if cut_after is not None:
                    room = cut_after - int(state["sent"])
                    if len(data) > room:
                        if room > 0:
                            sink.sendall(data[:room])
                        with self._lock:
                            self.cuts += 1
                        for sock in pair:
                            _reset(sock)
                        return
                    state["sent"] = int(state["sent"]) + len(data)
                sink.sendall(data)
        except OSError:
            for sock in pair:
                _reset(sock)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
