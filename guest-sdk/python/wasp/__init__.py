"""wasp -- write wasp plugins in Python.

A wasp plugin is a WebAssembly component of world
``wasp:spi/plugin-command``: it implements ``wasi:cli/run`` and reaches the
network only through the wasp socket provider, a Winsock SPI mirrored in
WIT. Build one with componentize-py, which generates the bindings this
package wraps (``wit_world``)::

    componentize-py -d wit -w wasp:spi/plugin-command componentize \\
        -p guest-sdk/python -p DIR app -o plugin.wasm

What is here:

- Winsock constants with their real values (``AF_INET``, ``FD_READ``, ...);
- :class:`WsaError`, raised by every failed call, with the Winsock number
  (``.errno``, ``WSAEACCES`` = 10013) and name (``.name``);
- :class:`Socket`, a socket with ``(host, port)`` addresses, much like the
  standard ``socket.socket``;
- :class:`EventQueue`, the window of WSPAsyncSelect: register sockets with
  :meth:`EventQueue.select`, then ``for event in queue: ...``;
- :func:`last_denial`, why the capability policy refused the last call.

The generated bindings stay available as :data:`wsp` (the ``WSP*`` calls
exactly as in the WIT) and :data:`wit_types`.
"""

import ipaddress as _ip
from dataclasses import dataclass as _dataclass
from typing import Iterator, Optional, Tuple, Union

from componentize_py_types import Err as _Err
from wit_world.imports import messages as _messages
from wit_world.imports import sockets as wsp
from wit_world.imports import types as wit_types

_E = wit_types.ErrorCode

# --- Winsock constants ------------------------------------------------------

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 23

SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3

IPPROTO_TCP = 6
IPPROTO_UDP = 17
FROM_PROTOCOL_INFO = -1

WSA_FLAG_OVERLAPPED = 0x01
WSA_FLAG_MULTIPOINT_C_ROOT = 0x02
WSA_FLAG_MULTIPOINT_C_LEAF = 0x04
WSA_FLAG_MULTIPOINT_D_ROOT = 0x08
WSA_FLAG_MULTIPOINT_D_LEAF = 0x10

MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_DONTROUTE = 0x4
MSG_WAITALL = 0x8
MSG_PARTIAL = 0x8000

FD_READ = 0x01
FD_WRITE = 0x02
FD_OOB = 0x04
FD_ACCEPT = 0x08
FD_CONNECT = 0x10
FD_CLOSE = 0x20
FD_QOS = 0x40
FD_GROUP_QOS = 0x80
FD_ROUTING_INTERFACE_CHANGE = 0x100
FD_ADDRESS_LIST_CHANGE = 0x200
FD_ALL_EVENTS = 0x3FF

SD_RECEIVE = 0
SD_SEND = 1
SD_BOTH = 2

JL_SENDER_ONLY = 1
JL_RECEIVER_ONLY = 2
JL_BOTH = 4

SOMAXCONN = 0x7FFFFFFF

# --- Errors -----------------------------------------------------------------

# The Winsock number of each WIT error-code case (their names are the
# Winsock names: ErrorCode.WSAEACCES is WSAEACCES).
_ERRNO = {
    _E.WSA_INVALID_HANDLE: 6,
    _E.WSA_OPERATION_ABORTED: 995,
    _E.WSA_IO_INCOMPLETE: 996,
    _E.WSA_IO_PENDING: 997,
    _E.WSAEINTR: 10004,
    _E.WSAEACCES: 10013,
    _E.WSAEFAULT: 10014,
    _E.WSAEINVAL: 10022,
    _E.WSAEMFILE: 10024,
    _E.WSAEWOULDBLOCK: 10035,
    _E.WSAEINPROGRESS: 10036,
    _E.WSAEALREADY: 10037,
    _E.WSAENOTSOCK: 10038,
    _E.WSAEDESTADDRREQ: 10039,
    _E.WSAEMSGSIZE: 10040,
    _E.WSAEPROTOTYPE: 10041,
    _E.WSAENOPROTOOPT: 10042,
    _E.WSAEPROTONOSUPPORT: 10043,
    _E.WSAESOCKTNOSUPPORT: 10044,
    _E.WSAEOPNOTSUPP: 10045,
    _E.WSAEPFNOSUPPORT: 10046,
    _E.WSAEAFNOSUPPORT: 10047,
    _E.WSAEADDRINUSE: 10048,
    _E.WSAEADDRNOTAVAIL: 10049,
    _E.WSAENETDOWN: 10050,
    _E.WSAENETUNREACH: 10051,
    _E.WSAENETRESET: 10052,
    _E.WSAECONNABORTED: 10053,
    _E.WSAECONNRESET: 10054,
    _E.WSAENOBUFS: 10055,
    _E.WSAEISCONN: 10056,
    _E.WSAENOTCONN: 10057,
    _E.WSAESHUTDOWN: 10058,
    _E.WSAETIMEDOUT: 10060,
    _E.WSAECONNREFUSED: 10061,
    _E.WSAEHOSTUNREACH: 10065,
}
_CODE = {number: code for code, number in _ERRNO.items()}

# WSAEACCES = 10013, WSA_IO_PENDING = 997, ... as module constants.
globals().update({code.name: number for code, number in _ERRNO.items()})


class WsaError(Exception):
    """A failed wasp call: the Winsock error it returned.

    ``errno`` is the Winsock number (``WSAEWOULDBLOCK`` = 10035), ``name``
    the Winsock name (``"WSAEWOULDBLOCK"``) and ``code`` the WIT
    ``error-code`` case. Construct it from either a number or a case.
    """

    def __init__(self, error: Union[int, "wit_types.ErrorCode"]):
        code = error if isinstance(error, _E) else _CODE[error]
        self.code = code
        self.errno = _ERRNO[code]
        self.name = code.name
        super().__init__(self.errno, self.name)

    def __str__(self) -> str:
        return f"{self.errno} {self.name}"


def _call(function, *args):
    """Calls a WSP function, raising WsaError for its error-code."""
    try:
        return function(*args)
    except _Err as e:
        raise WsaError(e.value) from None


# --- WIT flags <-> Winsock numbers --------------------------------------------

_F = wit_types.FdEvents
_FD = (
    (_F.READ, FD_READ),
    (_F.WRITE, FD_WRITE),
    (_F.OOB, FD_OOB),
    (_F.ACCEPT, FD_ACCEPT),
    (_F.CONNECT, FD_CONNECT),
    (_F.CLOSE, FD_CLOSE),
    (_F.QOS, FD_QOS),
    (_F.GROUP_QOS, FD_GROUP_QOS),
    (_F.ROUTING_INTERFACE_CHANGE, FD_ROUTING_INTERFACE_CHANGE),
    (_F.ADDRESS_LIST_CHANGE, FD_ADDRESS_LIST_CHANGE),
)
_M = wit_types.MessageFlags
_MSG = (
    (_M.OOB, MSG_OOB),
    (_M.PEEK, MSG_PEEK),
    (_M.DONT_ROUTE, MSG_DONTROUTE),
    (_M.PARTIAL, MSG_PARTIAL),
    (_M.WAIT_ALL, MSG_WAITALL),
)
_S = wit_types.SocketFlags
_SOCKET_FLAGS = (
    (_S.OVERLAPPED, WSA_FLAG_OVERLAPPED),
    (_S.MULTIPOINT_C_ROOT, WSA_FLAG_MULTIPOINT_C_ROOT),
    (_S.MULTIPOINT_C_LEAF, WSA_FLAG_MULTIPOINT_C_LEAF),
    (_S.MULTIPOINT_D_ROOT, WSA_FLAG_MULTIPOINT_D_ROOT),
    (_S.MULTIPOINT_D_LEAF, WSA_FLAG_MULTIPOINT_D_LEAF),
)
_SHUTDOWN = {
    SD_RECEIVE: wit_types.ShutdownHow.RECEIVE,
    SD_SEND: wit_types.ShutdownHow.SEND,
    SD_BOTH: wit_types.ShutdownHow.BOTH,
}
_JOIN = {
    JL_SENDER_ONLY: wit_types.JoinFlags.SENDER_ONLY,
    JL_RECEIVER_ONLY: wit_types.JoinFlags.RECEIVER_ONLY,
    JL_BOTH: wit_types.JoinFlags.BOTH,
}


def _to_wit(table, flag_type, value: int):
    """Winsock bits -> WIT flags; unknown bits are WSAEINVAL."""
    flags, rest = flag_type(0), value
    for wit, bit in table:
        if value & bit:
            flags |= wit
            rest &= ~bit
    if rest:
        raise WsaError(_E.WSAEINVAL)
    return flags


def _from_wit(table, flags) -> int:
    """WIT flags -> Winsock bits."""
    return sum(bit for wit, bit in table if wit in flags)


def _lookup(table: dict, value: int):
    try:
        return table[value]
    except KeyError:
        raise WsaError(_E.WSAEINVAL) from None


# --- Addresses ----------------------------------------------------------------


def _sockaddr(address: tuple, af: int = AF_INET) -> "wit_types.SocketAddress":
    """``(host, port)`` or ``(host, port, flowinfo, scope_id)`` -> WIT.

    Hosts are numeric (wasp has no name resolution); ``""`` is the wildcard
    address of ``af``.
    """
    host, port = address[0], address[1]
    if host == "":
        host = "::" if af == AF_INET6 else "0.0.0.0"
    ip = _ip.ip_address(host)
    if ip.version == 4:
        return wit_types.SocketAddress_Ipv4(
            wit_types.Ipv4SocketAddress(port=port, address=tuple(ip.packed))
        )
    packed = ip.packed
    groups = tuple(packed[i] << 8 | packed[i + 1] for i in range(0, 16, 2))
    flowinfo = address[2] if len(address) > 2 else 0
    scope_id = address[3] if len(address) > 3 else 0
    return wit_types.SocketAddress_Ipv6(
        wit_types.Ipv6SocketAddress(
            port=port, flow_info=flowinfo, address=groups, scope_id=scope_id
        )
    )


def _address(addr: "wit_types.SocketAddress") -> tuple:
    """WIT -> ``(host, port)`` (IPv4) or ``(host, port, flowinfo, scope_id)``."""
    a = addr.value
    if isinstance(addr, wit_types.SocketAddress_Ipv4):
        return (".".join(map(str, a.address)), a.port)
    packed = b"".join(g.to_bytes(2, "big") for g in a.address)
    return (str(_ip.IPv6Address(packed)), a.port, a.flow_info, a.scope_id)


# --- Sockets ------------------------------------------------------------------


class Socket:
    """A wasp socket (WSPSocket), much like ``socket.socket``.

    ``Socket(af, type, proto, flags)`` takes Winsock constants (``flags``
    the ``WSA_FLAG_*`` bits); ``Socket(fileno=n)`` wraps an existing
    descriptor. Addresses are ``(host, port)`` tuples. Failed calls raise
    :class:`WsaError`. A socket is closed (WSPCloseSocket) by
    :meth:`close`, at the end of a ``with`` block, or when collected.
    """

    def __init__(
        self,
        af: int = AF_INET,
        type: int = SOCK_STREAM,
        proto: int = 0,
        flags: int = 0,
        *,
        fileno: Optional[int] = None,
    ):
        self.family = af
        self.type = type
        self.proto = proto
        if fileno is None:
            wit_flags = _to_wit(_SOCKET_FLAGS, wit_types.SocketFlags, flags)
            fileno = _call(wsp.wsp_socket, af, type, proto, None, 0, wit_flags)
        self._s = fileno

    def __repr__(self) -> str:
        return f"<wasp.Socket fd={self._s} af={self.family} type={self.type}>"

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def fileno(self) -> int:
        """The descriptor (Winsock ``SOCKET``), -1 once closed."""
        return self._s

    def detach(self) -> int:
        """Gives the descriptor up without closing it and returns it."""
        s, self._s = self._s, -1
        return s

    def close(self) -> None:
        """WSPCloseSocket. Closing a closed socket does nothing."""
        s = self.detach()
        if s >= 0:
            _call(wsp.wsp_close_socket, s)

    def bind(self, address: tuple) -> None:
        """WSPBind to ``(host, port)`` (policy ``bind`` grant)."""
        _call(wsp.wsp_bind, self._s, _sockaddr(address, self.family))

    def listen(self, backlog: int = 128) -> None:
        """WSPListen (policy ``listen`` grant)."""
        _call(wsp.wsp_listen, self._s, backlog)

    def accept(self) -> Tuple["Socket", tuple]:
        """WSPAccept: ``(connection, (host, port))``."""
        s, peer = _call(wsp.wsp_accept, self._s)
        return Socket(self.family, self.type, self.proto, fileno=s), _address(peer)

    def connect(self, address: tuple) -> None:
        """WSPConnect to ``(host, port)`` (policy ``connect`` grant).

        A non-blocking stream connect raises WSAEWOULDBLOCK and completes
        in the background (FD_CONNECT).
        """
        _call(wsp.wsp_connect, self._s, _sockaddr(address, self.family))

    def send(self, data: bytes, flags: int = 0) -> int:
        """WSPSend of one buffer; returns the bytes sent."""
        data = bytes(data)
        wit_flags = _to_wit(_MSG, wit_types.MessageFlags, flags)
        return _call(wsp.wsp_send, self._s, data, [len(data)], wit_flags, None)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        """WSPSend until every byte of ``data`` is sent."""
        view = memoryview(bytes(data))
        while view:
            view = view[self.send(view, flags):]

    def sendto(self, data: bytes, flags_or_address, address: Optional[tuple] = None) -> int:
        """WSPSendTo: ``sendto(data, address)`` or ``sendto(data, flags, address)``."""
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = flags_or_address
        data = bytes(data)
        wit_flags = _to_wit(_MSG, wit_types.MessageFlags, flags)
        to = _sockaddr(address, self.family)
        return _call(wsp.wsp_send_to, self._s, data, [len(data)], wit_flags, to, None)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """WSPRecv of up to ``bufsize`` bytes; ``b""`` when the peer closed."""
        wit_flags = _to_wit(_MSG, wit_types.MessageFlags, flags)
        return _call(wsp.wsp_recv, self._s, bufsize, wit_flags, None)

    def recvfrom(self, bufsize: int, flags: int = 0) -> Tuple[bytes, tuple]:
        """WSPRecvFrom: one datagram and its sender ``(host, port)``."""
        wit_flags = _to_wit(_MSG, wit_types.MessageFlags, flags)
        data, sender = _call(wsp.wsp_recv_from, self._s, bufsize, wit_flags, None)
        return data, _address(sender)

    def shutdown(self, how: int) -> None:
        """WSPShutdown with ``SD_RECEIVE``, ``SD_SEND`` or ``SD_BOTH``."""
        _call(wsp.wsp_shutdown, self._s, _lookup(_SHUTDOWN, how))

    def setblocking(self, flag: bool) -> None:
        """WSPIoctl(FIONBIO): ``False`` makes the socket non-blocking.

        A socket registered with :meth:`EventQueue.select` cannot be made
        blocking again (WSAEINVAL).
        """
        _call(wsp.wsp_ioctl, self._s, wsp.IoctlCommand_Fionbio(not flag))

    def bytes_readable(self) -> int:
        """WSPIoctl(FIONREAD): what one receive would return at once."""
        return _call(wsp.wsp_ioctl, self._s, wsp.IoctlCommand_Fionread()).value

    def join_leaf(
        self,
        address: tuple,
        role: int = JL_BOTH,
        caller_data: Optional[bytes] = None,
        callee_capacity: int = 0,
    ) -> Tuple["Socket", bytes]:
        """WSPJoinLeaf: joins ``address`` (a multicast group, or a rooted
        multipoint peer) as ``JL_SENDER_ONLY``, ``JL_RECEIVER_ONLY`` or
        ``JL_BOTH``.

        Returns ``(leaf, callee_data)``: the leaf is this socket itself on
        a leaf socket, a new socket on a c_root one.
        """
        result = _call(
            wsp.wsp_join_leaf,
            self._s,
            _sockaddr(address, self.family),
            None if caller_data is None else bytes(caller_data),
            callee_capacity,
            None,
            None,
            _lookup(_JOIN, role),
        )
        if result.socket == self._s:
            leaf = self
        else:
            leaf = Socket(self.family, self.type, self.proto, fileno=result.socket)
        return leaf, result.callee_data

    def getsockname(self) -> tuple:
        """WSPGetSockName: the local ``(host, port)``."""
        return _address(_call(wsp.wsp_get_sock_name, self._s))

    def getpeername(self) -> tuple:
        """WSPGetPeerName: the connected peer's ``(host, port)``."""
        return _address(_call(wsp.wsp_get_peer_name, self._s))


socket = Socket


def last_denial() -> Optional[str]:
    """Why the policy refused this guest's latest denied call (WSAEACCES),
    naming the missing grant; ``None`` if nothing was denied."""
    return wsp.last_denial()


# --- WSPAsyncSelect -------------------------------------------------------------


def WSAGETSELECTEVENT(lparam: int) -> int:
    """The ``FD_*`` event of a message's ``lParam``."""
    return lparam & 0xFFFF


def WSAGETSELECTERROR(lparam: int) -> int:
    """The Winsock error of a message's ``lParam`` (0 for none)."""
    return lparam >> 16


@_dataclass(frozen=True)
class Event:
    """One posted message (WSPAsyncSelect, SPEC AS-1).

    ``msg`` is the message id given to :meth:`EventQueue.select`,
    ``socket`` the descriptor (``wParam``), ``event`` the single ``FD_*``
    bit, ``error`` the Winsock error number (0 for none) and ``lparam``
    the packed ``error << 16 | event``. ``completion`` is ``(token,
    bytes)`` for the completion of an overlapped operation, else ``None``.
    """

    msg: int
    socket: int
    event: int
    error: int
    lparam: int
    completion: Optional[Tuple[int, int]] = None

    @classmethod
    def _from_wit(cls, m) -> "Event":
        c = m.completion
        return cls(
            msg=m.msg,
            socket=m.socket,
            event=_from_wit(_FD, m.event),
            error=0 if m.error is None else _ERRNO[m.error],
            lparam=m.lparam,
            completion=None if c is None else (c.token, c.bytes),
        )


class EventQueue:
    """A guest-owned message queue: the window WSPAsyncSelect posts to.

    ``for event in queue:`` waits for each next :class:`Event` and ends
    when the queue is closed. Closing the queue (:meth:`close`, the end of
    a ``with`` block) stops delivery to it.
    """

    def __init__(self, capacity: int = 1024):
        """A queue of at most ``capacity`` (1..65536) messages."""
        self._q = _messages.MessageQueue(capacity)

    def __enter__(self) -> "EventQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def select(self, sock: Union[Socket, int], msg: int, events: int) -> None:
        """WSPAsyncSelect(sock, this queue, msg, events).

        ``events`` is a mask of ``FD_*`` bits; 0 cancels. The socket
        becomes non-blocking.
        """
        s = sock.fileno() if isinstance(sock, Socket) else sock
        mask = _to_wit(_FD, wit_types.FdEvents, events)
        _call(wsp.wsp_async_select, s, self._q, msg, mask)

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The oldest message, waiting up to ``timeout`` seconds (forever
        with ``None``); ``None`` on time-out or once the queue is closed."""
        ms = None if timeout is None else max(0, int(timeout * 1000))
        m = self._q.get(ms)
        return None if m is None else Event._from_wit(m)

    def peek(self) -> Optional[Event]:
        """The oldest message, left in the queue; never waits."""
        m = self._q.peek()
        return None if m is None else Event._from_wit(m)

    def drain(self, max: int = 256) -> list:
        """Up to ``max`` messages already there, oldest first; never waits."""
        return [Event._from_wit(m) for m in self._q.drain(max)]

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def __len__(self) -> int:
        return self._q.len()

    def overflows(self) -> int:
        """How often an event was held back because the queue was full."""
        return self._q.overflows()

    def subscribe(self):
        """A ``wasi:io/poll`` pollable, ready when a message waits."""
        from wit_world.imports import readiness

        return readiness.subscribe(self._q)

    def close(self) -> None:
        """Stops delivery: iteration ends and ``get`` returns ``None``."""
        self._q.close()
