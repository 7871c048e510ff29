"""The Python guest of the conformance scenarios
(tests/conformance/SCENARIOS.md): prints exactly what the Rust guest
(tests/programs/src/bin/conformance.rs) prints."""

import sys

import wasp
from wasp import WsaError
from wit_world import exports

# The message ids of the listener's and the connection's events.
WM_LISTENER = 1
WM_CONNECTION = 2


class Failure(Exception):
    """An unexpected failure: what failed and its Winsock error."""

    def __init__(self, what: str, error: WsaError):
        super().__init__(what)
        self.what = what
        self.error = error


def on(what, function, *args):
    """Calls ``function``; a WsaError becomes a Failure naming ``what``."""
    try:
        return function(*args)
    except WsaError as e:
        raise Failure(what, e) from None


def loopback(port: int) -> tuple:
    return ("127.0.0.1", port)


def echo_waiting(connection: wasp.Socket) -> int:
    """Echoes what waits on ``connection``; the bytes echoed (0 for none)."""
    try:
        data = connection.recv(4096)
    except WsaError as e:
        if e.errno == wasp.WSAEWOULDBLOCK:
            return 0
        raise Failure("recv", e) from None
    on("send", connection.sendall, data)
    return len(data)


def tcp_echo(port: int) -> None:
    listener = on("socket", wasp.Socket, wasp.AF_INET, wasp.SOCK_STREAM, wasp.IPPROTO_TCP)
    on("bind", listener.bind, loopback(port))
    on("listen", listener.listen, 8)
    queue = wasp.EventQueue(16)
    on("async-select", queue.select, listener, WM_LISTENER, wasp.FD_ACCEPT)
    print(f"listening on 127.0.0.1:{port}")
    connection = None
    total = 0
    for event in queue:
        if event.msg == WM_LISTENER and connection is None and event.event == wasp.FD_ACCEPT:
            connection, _ = on("accept", listener.accept)
            on("async-select", queue.select, connection, WM_CONNECTION,
               wasp.FD_READ | wasp.FD_CLOSE)
            print("accepted")
        elif event.msg == WM_CONNECTION and connection is not None:
            if event.event == wasp.FD_READ:
                total += echo_waiting(connection)
            elif event.event == wasp.FD_CLOSE:
                while (n := echo_waiting(connection)) > 0:
                    total += n
                print(f"closed after {total} bytes")
                on("close", connection.close)
                on("close", listener.close)
                return
    raise Failure("queue", WsaError(wasp.WSAEINVAL))


def udp(port: int) -> None:
    sock = on("bind", wasp.Socket, wasp.AF_INET, wasp.SOCK_DGRAM, wasp.IPPROTO_UDP)
    on("bind", sock.bind, loopback(0))
    on("sendto", sock.sendto, b"ping", loopback(port))
    data, (host, sender_port) = on("recvfrom", sock.recvfrom, 64)
    text = data.decode("utf-8", "replace")
    print(f'received {len(data)} bytes "{text}" from {host}:{sender_port}')


def denied(port: int) -> None:
    sock = on("socket", wasp.Socket, wasp.AF_INET, wasp.SOCK_STREAM, wasp.IPPROTO_TCP)
    try:
        sock.connect(loopback(port))
    except WsaError as e:
        print(f"connect: {e.errno} {e.name}")
        print(f"denial: {wasp.last_denial() or ''}")
        return
    raise Failure("connect succeeded", WsaError(wasp.WSAEINVAL))


def multicast(group: str, port: int) -> None:
    flags = wasp.WSA_FLAG_MULTIPOINT_C_LEAF | wasp.WSA_FLAG_MULTIPOINT_D_LEAF
    af = wasp.AF_INET6 if ":" in group else wasp.AF_INET
    sock = on("socket", wasp.Socket, af, wasp.SOCK_DGRAM, wasp.IPPROTO_UDP, flags)
    on("join-leaf", sock.join_leaf, (group, port), wasp.JL_BOTH)
    print(f"joined [{group}]:{port}" if af == wasp.AF_INET6 else f"joined {group}:{port}")
    on("send", sock.send, b"hello")
    data, _ = on("recvfrom", sock.recvfrom, 64)
    print(f'received {len(data)} bytes "{data.decode("utf-8", "replace")}"')


def main(args: list) -> int:
    arg = lambda n: args[n] if n < len(args) else ""
    scenarios = {
        "tcp-echo": lambda: tcp_echo(int(arg(1))),
        "udp": lambda: udp(int(arg(1))),
        "denied": lambda: denied(int(arg(1))),
        "multicast": lambda: multicast(arg(1), int(arg(2))),
    }
    scenario = scenarios.get(arg(0))
    if scenario is None:
        print(f"unknown scenario {arg(0)!r}", file=sys.stderr)
        return 2
    try:
        scenario()
    except Failure as f:
        print(f"error: {f.what} {f.error.errno} {f.error.name}")
        return 1
    return 0


class Run(exports.Run):
    """wasi:cli/run: the scenario named by the first argument."""

    def run(self) -> None:
        status = main(sys.argv[1:])
        sys.stdout.flush()
        if status != 0:
            sys.exit(status)
