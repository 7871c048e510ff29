"""An event-driven TCP echo server (WSPAsyncSelect) in Python.

    wasp run python-echo.wasm --policy examples/python-echo/policy.toml -- [ADDR]

Listens on ADDR (default 127.0.0.1:7000; port 0 picks one) and prints
``python-echo: listening on ADDR``. One message queue serves every
connection: FD_ACCEPT on the listener accepts until WSAEWOULDBLOCK; each
connection is registered for FD_READ, FD_WRITE and FD_CLOSE. What cannot
be sent at once waits until FD_WRITE; while too much waits, the connection
is not read (FD_READ comes again after the next recv), so a slow client
cannot make the plugin grow without bound.
"""

import sys

import wasp
from wasp import WsaError
from wit_world import exports

WM_ACCEPT = 1  # message id of the listener
WM_CONNECTION = 2  # message id of the connections
CHUNK = 64 * 1024  # largest receive
MAX_PENDING = 256 * 1024  # bytes waiting to be echoed before reading pauses


class Connection:
    def __init__(self, sock: wasp.Socket):
        self.sock = sock
        self.pending = bytearray()

    def flush(self) -> bool:
        """Sends what is pending; False when the socket is full (FD_WRITE
        follows)."""
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except WsaError as e:
                if e.errno == wasp.WSAEWOULDBLOCK:
                    return False
                raise
            del self.pending[:sent]
        return True

    def on_read(self) -> bool:
        """Reads what is there and echoes it; False once the peer closed."""
        while len(self.pending) < MAX_PENDING:
            try:
                data = self.sock.recv(CHUNK)
            except WsaError as e:
                if e.errno == wasp.WSAEWOULDBLOCK:
                    return True
                raise
            if not data:
                return False
            self.pending += data
            # A short receive emptied the socket: FD_READ comes again.
            if not self.flush() or len(data) < CHUNK:
                return True
        return True


def parse_address(text: str) -> tuple:
    """``HOST:PORT`` or ``[HOST6]:PORT`` -> ``(host, port)``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def serve(address: tuple) -> None:
    family = wasp.AF_INET6 if ":" in address[0] else wasp.AF_INET
    queue = wasp.EventQueue(4096)
    listener = wasp.Socket(family, wasp.SOCK_STREAM, wasp.IPPROTO_TCP)
    listener.bind(address)
    listener.listen(1024)
    queue.select(listener, WM_ACCEPT, wasp.FD_ACCEPT)
    host, port = listener.getsockname()[:2]
    print(f"python-echo: listening on {host}:{port}", flush=True)

    connections = {}
    for event in queue:
        if event.msg == WM_ACCEPT:
            while True:
                try:
                    sock, _peer = listener.accept()
                except WsaError as e:
                    if e.errno != wasp.WSAEWOULDBLOCK:
                        # WSAEMFILE and the like: FD_ACCEPT comes again.
                        print(f"python-echo: accept: {e}", file=sys.stderr)
                    break
                queue.select(sock, WM_CONNECTION, wasp.FD_READ | wasp.FD_WRITE | wasp.FD_CLOSE)
                connections[sock.fileno()] = Connection(sock)
            continue
        conn = connections.get(event.socket)
        if conn is None:
            continue  # a message of a connection already closed
        try:
            if event.event == wasp.FD_READ:
                open_ = conn.on_read()
            elif event.event == wasp.FD_WRITE:
                # Room again: send what waits, then read what was held back.
                open_ = conn.on_read() if conn.flush() else True
            elif event.event == wasp.FD_CLOSE:
                if event.error == 0:
                    conn.on_read()  # what arrived before the close
                open_ = False
            else:
                open_ = True
            if not open_:
                conn.flush()  # echo what is left, then close
        except WsaError:
            open_ = False
        if not open_:
            del connections[event.socket]
            conn.sock.close()


class Run(exports.Run):
    """wasi:cli/run: serves until the queue is closed."""

    def run(self) -> None:
        address = parse_address(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000")
        try:
            serve(address)
        except WsaError as e:
            print(f"python-echo: {e}", file=sys.stderr)
            reason = wasp.last_denial()
            if reason:
                print(f"python-echo: denied because {reason}", file=sys.stderr)
            sys.exit(1)
