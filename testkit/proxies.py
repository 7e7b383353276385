"""TCP forwarders to real servers that a test or the chaos drill can cut, restore, slow down or hold: the server
stays real, the process under test sees it go away, come back, or answer late."""

from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    """A TCP forwarder to a real server that the test can cut and restore: the server stays real, the
    process under test sees it go away (connections reset, new ones refused) and come back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # only the connect is bounded: a server busy for a while is not gone
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv(), which close() would not
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


class SlowProxy(TcpProxy):
    """A TcpProxy (a forwarder to the real server) that can also delay every chunk it forwards — a slow
    database or network — or hold them all while keeping the connections open: a server that never answers.
    Either way the server stays real."""

    def __init__(self, target_host: str, target_port: int):
        self.delay = 0.0  # seconds added to every chunk forwarded, in each direction
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(target_host, target_port)

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        TcpProxy._pipe(_Slowed(src, self), dst)

    def close(self) -> None:
        self.release()  # lets held pipes run into the closed sockets and end
        super().close()


class _Slowed:
    """The receiving end of one direction of a SlowProxy: what it reads is handed on late, or not at all."""

    def __init__(self, sock: socket.socket, proxy: SlowProxy):
        self.sock, self.proxy = sock, proxy

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        if data and self.proxy.delay:
            time.sleep(self.proxy.delay)
        self.proxy.flowing.wait()
        return data

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()
