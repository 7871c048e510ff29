/**
 * wasp — write wasp plugins in JavaScript.
 *
 * A wasp plugin is a WebAssembly component that implements `wasi:cli/run`
 * and reaches the network only through the wasp socket provider, a Winsock
 * service-provider interface mirrored in WIT (`wasp:spi@0.1.0`). This module
 * wraps the imports that componentize-js (StarlingMonkey) or componentize-qjs
 * (QuickJS) generate for that WIT:
 *
 * - Winsock constants with their real values (`AF_INET`, `FD_READ`,
 *   `WSAEACCES`, ...);
 * - {@link WsaError}, thrown by every failed call, with the Winsock number
 *   (`.errno`, WSAEACCES = 10013) and name (`.code`, "WSAEACCES");
 * - {@link Socket}: WSPSocket and the calls on one descriptor, with
 *   `{host, port}` or `"host:port"` addresses and `Uint8Array` data;
 * - {@link EventQueue}: the window of WSPAsyncSelect; register sockets with
 *   `queue.select(sock, msg, FD_READ | FD_CLOSE)`, then
 *   `for (const ev of queue) ...` waits for each message;
 * - {@link lastDenial}: why the capability policy refused the last call.
 *
 * The WSP calls exactly as in the WIT stay available as {@link wsp}.
 *
 * Build a plugin with `node guest-sdk/js/build.mjs plugin.js -o plugin.wasm`
 * (see README.md): it imports this file with a relative path.
 *
 * Nothing here calls the host at module load: a component is pre-initialised
 * (Wizer) by running its top level at build time, where no wasp host exists.
 *
 * @module wasp
 */

import * as wspImports from 'wasp:spi/sockets@0.1.0';
import { MessageQueue } from 'wasp:spi/messages@0.1.0';

/**
 * The WSP calls as the bindings generator made them (`wspSocket`,
 * `wspSend`, ..., `lastDenial`): WIT names in camelCase, `result` errors
 * thrown with the `error-code` case (`'wsaeacces'`) in `err.payload`.
 */
export const wsp = wspImports;

// --- Winsock constants ---------------------------------------------------------

/** Wildcard address family (WSPSocket resolves it from the catalogue). */
export const AF_UNSPEC = 0;
/** IPv4. */
export const AF_INET = 2;
/** IPv6 (the Winsock value). */
export const AF_INET6 = 23;

/** Stream sockets (TCP). */
export const SOCK_STREAM = 1;
/** Datagram sockets (UDP). */
export const SOCK_DGRAM = 2;
/** Raw sockets (not offered by wasp: WSAESOCKTNOSUPPORT). */
export const SOCK_RAW = 3;
/** Reliable datagrams (not offered). */
export const SOCK_RDM = 4;
/** Sequenced packets (not offered). */
export const SOCK_SEQPACKET = 5;

/** TCP. */
export const IPPROTO_TCP = 6;
/** UDP. */
export const IPPROTO_UDP = 17;
/** wasp's rooted multipoint protocol over TCP (c_root/c_leaf sockets). */
export const IPPROTO_WASP_RMP = 253;
/** Take af/type/protocol from the protocol-info argument of WSPSocket. */
export const FROM_PROTOCOL_INFO = -1;

/** WSPSocket dwFlags: the socket accepts overlapped operations. */
export const WSA_FLAG_OVERLAPPED = 0x01;
/** WSPSocket dwFlags: control-plane root. */
export const WSA_FLAG_MULTIPOINT_C_ROOT = 0x02;
/** WSPSocket dwFlags: control-plane leaf. */
export const WSA_FLAG_MULTIPOINT_C_LEAF = 0x04;
/** WSPSocket dwFlags: data-plane root. */
export const WSA_FLAG_MULTIPOINT_D_ROOT = 0x08;
/** WSPSocket dwFlags: data-plane leaf. */
export const WSA_FLAG_MULTIPOINT_D_LEAF = 0x10;

/** Send/receive flag: urgent (out-of-band) data. */
export const MSG_OOB = 0x1;
/** Receive flag: look without removing the data. */
export const MSG_PEEK = 0x2;
/** Send flag: accepted and ignored, as Winsock allows. */
export const MSG_DONTROUTE = 0x4;
/** Receive flag: a blocking stream receive waits for the full length. */
export const MSG_WAITALL = 0x8;
/** Partial message (unsupported: WSAEOPNOTSUPP). */
export const MSG_PARTIAL = 0x8000;

/** FD_READ: data to read (re-enabled by recv). */
export const FD_READ = 0x01;
/** FD_WRITE: room to send again. */
export const FD_WRITE = 0x02;
/** FD_OOB: urgent data. */
export const FD_OOB = 0x04;
/** FD_ACCEPT: a connection to accept. */
export const FD_ACCEPT = 0x08;
/** FD_CONNECT: a connect or join finished. */
export const FD_CONNECT = 0x10;
/** FD_CLOSE: the connection closed. */
export const FD_CLOSE = 0x20;
/** FD_QOS: the quality of service changed. */
export const FD_QOS = 0x40;
/** FD_GROUP_QOS: reserved. */
export const FD_GROUP_QOS = 0x80;
/** FD_ROUTING_INTERFACE_CHANGE (armed by its ioctl). */
export const FD_ROUTING_INTERFACE_CHANGE = 0x100;
/** FD_ADDRESS_LIST_CHANGE (armed by its ioctl). */
export const FD_ADDRESS_LIST_CHANGE = 0x200;
/** Every FD_* event. */
export const FD_ALL_EVENTS = 0x3ff;

/** WSPShutdown: no more receives. */
export const SD_RECEIVE = 0;
/** WSPShutdown: no more sends. */
export const SD_SEND = 1;
/** WSPShutdown: neither. */
export const SD_BOTH = 2;

/** WSPJoinLeaf dwFlags: may send to the session, receives nothing. */
export const JL_SENDER_ONLY = 1;
/** WSPJoinLeaf dwFlags: receives from the session, may not send. */
export const JL_RECEIVER_ONLY = 2;
/** WSPJoinLeaf dwFlags: sends and receives. */
export const JL_BOTH = 4;

/** The largest listen backlog. */
export const SOMAXCONN = 0x7fffffff;

// --- Winsock errors -------------------------------------------------------------

/** WSA_INVALID_HANDLE: an overlapped token that names no operation. */
export const WSA_INVALID_HANDLE = 6;
/** WSA_OPERATION_ABORTED: an overlapped operation was cancelled. */
export const WSA_OPERATION_ABORTED = 995;
/** WSA_IO_INCOMPLETE: the overlapped operation has not completed. */
export const WSA_IO_INCOMPLETE = 996;
/** WSA_IO_PENDING: the overlapped operation completes later. */
export const WSA_IO_PENDING = 997;
/** WSAEINTR: a blocking call was interrupted. */
export const WSAEINTR = 10004;
/** WSAEACCES: the capability policy does not grant this use. */
export const WSAEACCES = 10013;
/** WSAEFAULT: an argument does not fit. */
export const WSAEFAULT = 10014;
/** WSAEINVAL: an invalid argument or socket state. */
export const WSAEINVAL = 10022;
/** WSAEMFILE: no more descriptors (the guest's socket quota). */
export const WSAEMFILE = 10024;
/** WSAEWOULDBLOCK: a non-blocking call cannot complete now. */
export const WSAEWOULDBLOCK = 10035;
/** WSAEINPROGRESS: a blocking operation is in progress. */
export const WSAEINPROGRESS = 10036;
/** WSAEALREADY: an operation is already in progress. */
export const WSAEALREADY = 10037;
/** WSAENOTSOCK: the descriptor is not a socket. */
export const WSAENOTSOCK = 10038;
/** WSAEDESTADDRREQ: a destination address is required. */
export const WSAEDESTADDRREQ = 10039;
/** WSAEMSGSIZE: the datagram is too large. */
export const WSAEMSGSIZE = 10040;
/** WSAEPROTOTYPE: the protocol is of the wrong type for the socket. */
export const WSAEPROTOTYPE = 10041;
/** WSAENOPROTOOPT: unknown or unsupported socket option. */
export const WSAENOPROTOOPT = 10042;
/** WSAEPROTONOSUPPORT: the protocol is not supported. */
export const WSAEPROTONOSUPPORT = 10043;
/** WSAESOCKTNOSUPPORT: the socket type is not supported. */
export const WSAESOCKTNOSUPPORT = 10044;
/** WSAEOPNOTSUPP: the operation is not supported on this socket. */
export const WSAEOPNOTSUPP = 10045;
/** WSAEPFNOSUPPORT: the protocol family is not supported. */
export const WSAEPFNOSUPPORT = 10046;
/** WSAEAFNOSUPPORT: the address family is not supported. */
export const WSAEAFNOSUPPORT = 10047;
/** WSAEADDRINUSE: the address is already in use. */
export const WSAEADDRINUSE = 10048;
/** WSAEADDRNOTAVAIL: the address is not valid here. */
export const WSAEADDRNOTAVAIL = 10049;
/** WSAENETDOWN: the network subsystem failed. */
export const WSAENETDOWN = 10050;
/** WSAENETUNREACH: the network is unreachable. */
export const WSAENETUNREACH = 10051;
/** WSAENETRESET: the connection was reset by keep-alive. */
export const WSAENETRESET = 10052;
/** WSAECONNABORTED: the connection was aborted locally. */
export const WSAECONNABORTED = 10053;
/** WSAECONNRESET: the connection was reset by the peer. */
export const WSAECONNRESET = 10054;
/** WSAENOBUFS: no buffer space is available. */
export const WSAENOBUFS = 10055;
/** WSAEISCONN: the socket is already connected. */
export const WSAEISCONN = 10056;
/** WSAENOTCONN: the socket is not connected. */
export const WSAENOTCONN = 10057;
/** WSAESHUTDOWN: the socket has been shut down in that direction. */
export const WSAESHUTDOWN = 10058;
/** WSAETIMEDOUT: the operation timed out. */
export const WSAETIMEDOUT = 10060;
/** WSAECONNREFUSED: the peer refused the connection. */
export const WSAECONNREFUSED = 10061;
/** WSAEHOSTUNREACH: the host is unreachable. */
export const WSAEHOSTUNREACH = 10065;

/** The WIT `error-code` case of each Winsock number, and back. */
const ERROR_CASES = [
  ['wsa-invalid-handle', WSA_INVALID_HANDLE],
  ['wsa-operation-aborted', WSA_OPERATION_ABORTED],
  ['wsa-io-incomplete', WSA_IO_INCOMPLETE],
  ['wsa-io-pending', WSA_IO_PENDING],
  ['wsaeintr', WSAEINTR],
  ['wsaeacces', WSAEACCES],
  ['wsaefault', WSAEFAULT],
  ['wsaeinval', WSAEINVAL],
  ['wsaemfile', WSAEMFILE],
  ['wsaewouldblock', WSAEWOULDBLOCK],
  ['wsaeinprogress', WSAEINPROGRESS],
  ['wsaealready', WSAEALREADY],
  ['wsaenotsock', WSAENOTSOCK],
  ['wsaedestaddrreq', WSAEDESTADDRREQ],
  ['wsaemsgsize', WSAEMSGSIZE],
  ['wsaeprototype', WSAEPROTOTYPE],
  ['wsaenoprotoopt', WSAENOPROTOOPT],
  ['wsaeprotonosupport', WSAEPROTONOSUPPORT],
  ['wsaesocktnosupport', WSAESOCKTNOSUPPORT],
  ['wsaeopnotsupp', WSAEOPNOTSUPP],
  ['wsaepfnosupport', WSAEPFNOSUPPORT],
  ['wsaeafnosupport', WSAEAFNOSUPPORT],
  ['wsaeaddrinuse', WSAEADDRINUSE],
  ['wsaeaddrnotavail', WSAEADDRNOTAVAIL],
  ['wsaenetdown', WSAENETDOWN],
  ['wsaenetunreach', WSAENETUNREACH],
  ['wsaenetreset', WSAENETRESET],
  ['wsaeconnaborted', WSAECONNABORTED],
  ['wsaeconnreset', WSAECONNRESET],
  ['wsaenobufs', WSAENOBUFS],
  ['wsaeisconn', WSAEISCONN],
  ['wsaenotconn', WSAENOTCONN],
  ['wsaeshutdown', WSAESHUTDOWN],
  ['wsaetimedout', WSAETIMEDOUT],
  ['wsaeconnrefused', WSAECONNREFUSED],
  ['wsaehostunreach', WSAEHOSTUNREACH],
];
const ERRNO_OF_CASE = new Map(ERROR_CASES);
const CASE_OF_ERRNO = new Map(ERROR_CASES.map(([c, n]) => [n, c]));

/**
 * A failed WSP call: the Winsock error it returned (`lpErrno`).
 *
 * `errno` is the Winsock number (`WSAEWOULDBLOCK` = 10035), `code` the
 * Winsock name (`"WSAEWOULDBLOCK"`) and `witCode` the WIT `error-code` case
 * (`'wsaewouldblock'`). `call` names the call that failed, when known.
 */
export class WsaError extends Error {
  /**
   * @param {number|string} error a Winsock number (10013), a Winsock name
   *   ("WSAEACCES") or a WIT case ('wsaeacces')
   * @param {string} [call] the call that failed, for the message
   */
  constructor(error, call) {
    const witCode = witCaseOf(error);
    const errno = ERRNO_OF_CASE.get(witCode);
    const code = witCode.toUpperCase().replace(/-/g, '_');
    super(call ? `${call}: ${errno} ${code}` : `${errno} ${code}`);
    this.name = 'WsaError';
    /** The Winsock number. */
    this.errno = errno;
    /** The Winsock name, upper case. */
    this.code = code;
    /** The WIT error-code case. */
    this.witCode = witCode;
    /** The call that failed (`'bind'`, ...) or undefined. */
    this.call = call;
  }

  /** Whether this is WSAEWOULDBLOCK (a non-blocking call could not complete). */
  get wouldBlock() {
    return this.errno === WSAEWOULDBLOCK;
  }

  /** Whether this is WSA_IO_PENDING (an overlapped operation completes later). */
  get pending() {
    return this.errno === WSA_IO_PENDING;
  }

  /** Whether `e` is a WsaError, of Winsock number `errno` if given. */
  static is(e, errno) {
    return e instanceof WsaError && (errno === undefined || e.errno === errno);
  }
}

function witCaseOf(error) {
  if (typeof error === 'number') {
    const c = CASE_OF_ERRNO.get(error);
    if (c !== undefined) return c;
  } else if (typeof error === 'string') {
    const lower = error.toLowerCase().replace(/_/g, '-');
    if (ERRNO_OF_CASE.has(lower)) return lower;
    // "WSAEACCES" -> 'wsaeacces'; "WSA_IO_PENDING" -> 'wsa-io-pending'
    if (ERRNO_OF_CASE.has(error)) return error;
  }
  throw new TypeError(`not a Winsock error: ${String(error)}`);
}

/** The Winsock name of a number (`errorName(10013)` is "WSAEACCES"). */
export function errorName(errno) {
  const c = CASE_OF_ERRNO.get(errno);
  return c === undefined ? String(errno) : c.toUpperCase().replace(/-/g, '_');
}

/**
 * Calls a WSP function; its `error-code` becomes a WsaError. Both
 * generators throw an error whose `payload` is the case name.
 */
function call(name, fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    const payload = e !== null && typeof e === 'object' && 'payload' in e ? e.payload : e;
    if (typeof payload === 'string' && ERRNO_OF_CASE.has(payload)) {
      throw new WsaError(payload, name);
    }
    throw e;
  }
}

// --- Bytes ------------------------------------------------------------------------

// QuickJS (componentize-qjs) has no TextEncoder/TextDecoder: UTF-8 by hand.

/** A string as UTF-8 bytes. */
export function utf8Encode(text) {
  if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(text);
  const out = [];
  for (const ch of String(text)) {
    let c = ch.codePointAt(0);
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** UTF-8 bytes as a string (invalid sequences become U+FFFD). */
export function utf8Decode(bytes) {
  if (typeof TextDecoder !== 'undefined') return new TextDecoder().decode(bytes);
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let need = 0;
    let c;
    if (b < 0x80) c = b;
    else if (b >= 0xc2 && b < 0xe0) { need = 1; c = b & 31; }
    else if (b >= 0xe0 && b < 0xf0) { need = 2; c = b & 15; }
    else if (b >= 0xf0 && b < 0xf5) { need = 3; c = b & 7; }
    else { s += '\ufffd'; i++; continue; }
    let j = 1;
    for (; j <= need; j++) {
      const n = bytes[i + j];
      if (n === undefined || (n & 0xc0) !== 0x80) break;
      c = (c << 6) | (n & 63);
    }
    if (j <= need || (need === 2 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
        (need === 3 && (c < 0x10000 || c > 0x10ffff))) {
      s += '\ufffd';
      i += j > 1 ? j : 1;
      continue;
    }
    s += String.fromCodePoint(c);
    i += need + 1;
  }
  return s;
}

/** Data to send: a Uint8Array, string (UTF-8), ArrayBuffer, typed array or number array. */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return utf8Encode(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Object.prototype.toString.call(data) === '[object ArrayBuffer]') return new Uint8Array(data);
  if (Array.isArray(data)) return Uint8Array.from(data);
  throw new TypeError('data must be a Uint8Array, a string, an ArrayBuffer or an array of bytes');
}

// StarlingMonkey's bindings make their Uint8Arrays in another realm, where
// `instanceof Uint8Array` is false: view those bytes, never copy them one by
// one (Uint8Array.from of 64 KiB takes the interpreter ~0.2 s).
function asUint8Array(list) {
  if (list instanceof Uint8Array) return list;
  if (ArrayBuffer.isView(list)) return new Uint8Array(list.buffer, list.byteOffset, list.byteLength);
  return Uint8Array.from(list);
}

// --- Addresses --------------------------------------------------------------------

/**
 * A socket address (`sockaddr_in` / `sockaddr_in6`): numeric `host`, `port`
 * and for IPv6 `flowInfo` and `scopeId`. `String(addr)` is `"host:port"`
 * (`"[host]:port"` for IPv6).
 */
export class SocketAddress {
  constructor(host, port, family = host.includes(':') ? AF_INET6 : AF_INET, flowInfo = 0, scopeId = 0) {
    /** AF_INET or AF_INET6. */
    this.family = family;
    /** The numeric address ("127.0.0.1", "::1"). */
    this.host = host;
    /** The port. */
    this.port = port;
    if (family === AF_INET6) {
      /** IPv6 flow information. */
      this.flowInfo = flowInfo;
      /** IPv6 scope (interface) id. */
      this.scopeId = scopeId;
    }
  }

  toString() {
    return this.family === AF_INET6 ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }
}

function parseIPv4(host) {
  const parts = host.split('.');
  if (parts.length !== 4) return null;
  const octets = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    octets.push(n);
  }
  return octets;
}

function parseIPv6(host) {
  let text = host;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 === null) return null;
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s) => (s === '' ? [] : s.split(':'));
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const parse = (g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN);
  const h = head.map(parse);
  const r = rest.map(parse);
  if (h.some(Number.isNaN) || r.some(Number.isNaN)) return null;
  const total = h.length + r.length + tail.length;
  if (halves.length === 1) {
    return total === 8 ? [...h, ...r, ...tail] : null;
  }
  if (total > 7) return null;
  return [...h, ...new Array(8 - total).fill(0), ...r, ...tail];
}

function formatIPv6(g) {
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
  }
  // RFC 5952: the longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a) => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/**
 * Parses an address: `{host, port}` (with `flowInfo`, `scopeId` for IPv6),
 * `"host:port"`, `"[v6]:port"`, `[host, port]` or a {@link SocketAddress}.
 * Hosts are numeric (wasp resolves no names); `""` or `"*"` is the
 * wildcard address of `family`.
 *
 * @returns {SocketAddress}
 */
export function parseAddress(address, family = AF_INET) {
  let host;
  let port;
  let flowInfo = 0;
  let scopeId = 0;
  if (typeof address === 'string') {
    const m = /^\[([^\]]*)\]:(\d+)$/.exec(address) || /^([^:]*):(\d+)$/.exec(address);
    if (!m) throw new TypeError(`not an address "host:port": ${address}`);
    host = m[1];
    port = Number(m[2]);
  } else if (Array.isArray(address)) {
    [host, port, flowInfo = 0, scopeId = 0] = address;
  } else if (address !== null && typeof address === 'object') {
    ({ host = '', port, flowInfo = 0, scopeId = 0 } = address);
  } else {
    throw new TypeError('an address is {host, port}, "host:port" or [host, port]');
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TypeError(`not a port: ${String(port)}`);
  }
  if (host === '' || host === '*') host = family === AF_INET6 ? '::' : '0.0.0.0';
  if (parseIPv4(host) !== null) return new SocketAddress(host, port, AF_INET);
  const groups = parseIPv6(host);
  if (groups === null) throw new TypeError(`not a numeric IP address: ${host}`);
  return new SocketAddress(formatIPv6(groups), port, AF_INET6, flowInfo, scopeId);
}

/** A SocketAddress as WIT `socket-address`. */
export function toWitAddress(address, family = AF_INET) {
  const a = address instanceof SocketAddress ? address : parseAddress(address, family);
  if (a.family === AF_INET) {
    return { tag: 'ipv4', val: { port: a.port, address: parseIPv4(a.host) } };
  }
  return {
    tag: 'ipv6',
    val: { port: a.port, flowInfo: a.flowInfo >>> 0, address: parseIPv6(a.host), scopeId: a.scopeId >>> 0 },
  };
}

/** A WIT `socket-address` as a SocketAddress. */
export function fromWitAddress(wit) {
  const v = wit.val;
  if (wit.tag === 'ipv4') {
    return new SocketAddress(Array.from(v.address).join('.'), v.port, AF_INET);
  }
  return new SocketAddress(formatIPv6(Array.from(v.address)), v.port, AF_INET6, v.flowInfo, v.scopeId);
}

// --- Winsock bits <-> WIT flags -----------------------------------------------------

const FD_BITS = [
  ['read', FD_READ],
  ['write', FD_WRITE],
  ['oob', FD_OOB],
  ['accept', FD_ACCEPT],
  ['connect', FD_CONNECT],
  ['close', FD_CLOSE],
  ['qos', FD_QOS],
  ['groupQos', FD_GROUP_QOS],
  ['routingInterfaceChange', FD_ROUTING_INTERFACE_CHANGE],
  ['addressListChange', FD_ADDRESS_LIST_CHANGE],
];
const MSG_BITS = [
  ['oob', MSG_OOB],
  ['peek', MSG_PEEK],
  ['dontRoute', MSG_DONTROUTE],
  ['partial', MSG_PARTIAL],
  ['waitAll', MSG_WAITALL],
];
const SOCKET_FLAG_BITS = [
  ['overlapped', WSA_FLAG_OVERLAPPED],
  ['multipointCRoot', WSA_FLAG_MULTIPOINT_C_ROOT],
  ['multipointCLeaf', WSA_FLAG_MULTIPOINT_C_LEAF],
  ['multipointDRoot', WSA_FLAG_MULTIPOINT_D_ROOT],
  ['multipointDLeaf', WSA_FLAG_MULTIPOINT_D_LEAF],
];
const SHUTDOWN_CASES = { [SD_RECEIVE]: 'receive', [SD_SEND]: 'send', [SD_BOTH]: 'both' };
const JOIN_CASES = { [JL_SENDER_ONLY]: 'sender-only', [JL_RECEIVER_ONLY]: 'receiver-only', [JL_BOTH]: 'both' };

/** Winsock bits as a WIT flags object; unknown bits are WSAEINVAL. */
function toWitFlags(table, bits, what) {
  const flags = {};
  let rest = bits >>> 0;
  for (const [name, bit] of table) {
    flags[name] = (bits & bit) !== 0;
    rest &= ~bit;
  }
  if (rest !== 0) throw new WsaError(WSAEINVAL, what);
  return flags;
}

/** A WIT flags object as Winsock bits. */
function fromWitFlags(table, flags) {
  let bits = 0;
  for (const [name, bit] of table) if (flags && flags[name]) bits |= bit;
  return bits;
}

/** FD_* bits as the WIT `fd-events` flags object. */
export function toFdEvents(bits) {
  return toWitFlags(FD_BITS, bits, 'fd-events');
}

/** The WIT `fd-events` flags object as FD_* bits. */
export function fromFdEvents(flags) {
  return fromWitFlags(FD_BITS, flags);
}

function lookup(table, value, what) {
  const c = table[value];
  if (c === undefined) throw new WsaError(WSAEINVAL, what);
  return c;
}

function u64ToNumber(v) {
  return typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function none(v) {
  return v === undefined ? null : v;
}

// --- Sockets --------------------------------------------------------------------------

/**
 * A wasp socket descriptor (WSPSocket).
 *
 * `new Socket(af, type, protocol, flags)` takes Winsock constants (`flags`
 * the WSA_FLAG_* bits); {@link Socket.fromFd} wraps an existing descriptor.
 * Addresses are `{host, port}`, `"host:port"` or `[host, port]`; received
 * addresses are {@link SocketAddress}es. Data is a `Uint8Array` (strings are
 * sent as UTF-8). Failed calls throw {@link WsaError}. Close it with
 * {@link Socket#close} (JavaScript has no destructors; descriptors are not
 * closed by the garbage collector).
 */
export class Socket {
  /**
   * WSPSocket(af, type, protocol, NULL, 0, flags).
   *
   * @param {number} [af=AF_INET]
   * @param {number} [type=SOCK_STREAM]
   * @param {number} [protocol=0] 0 picks the catalogue's default
   * @param {number} [flags=0] WSA_FLAG_* bits
   */
  constructor(af = AF_INET, type = SOCK_STREAM, protocol = 0, flags = 0, fd = undefined) {
    /** The address family the socket was created with. */
    this.family = af;
    /** The socket type. */
    this.type = type;
    /** The protocol. */
    this.protocol = protocol;
    if (fd === undefined) {
      const witFlags = toWitFlags(SOCKET_FLAG_BITS, flags, 'socket');
      fd = call('socket', wsp.wspSocket, af, type, protocol, undefined, 0, witFlags);
    }
    this._fd = fd;
  }

  /** Wraps descriptor `fd` (an accepted or joined socket, ...). */
  static fromFd(fd, af = AF_INET, type = SOCK_STREAM, protocol = 0) {
    return new Socket(af, type, protocol, 0, fd);
  }

  /** The descriptor (Winsock SOCKET), -1 once closed. */
  get fd() {
    return this._fd;
  }

  /** The descriptor (Winsock SOCKET), -1 once closed. */
  fileno() {
    return this._fd;
  }

  /** Gives the descriptor up without closing it and returns it. */
  detach() {
    const fd = this._fd;
    this._fd = -1;
    return fd;
  }

  toString() {
    return `Socket(fd=${this._fd}, af=${this.family}, type=${this.type})`;
  }

  /** WSPBind to `address` (policy `bind` grant). */
  bind(address) {
    call('bind', wsp.wspBind, this._fd, toWitAddress(address, this.family));
  }

  /** WSPListen with `backlog` (policy `listen` grant). */
  listen(backlog = 128) {
    call('listen', wsp.wspListen, this._fd, Math.min(backlog, SOMAXCONN) >>> 0);
  }

  /**
   * WSPAccept: one pending connection.
   *
   * @returns {[Socket, SocketAddress]} the new socket and its peer
   */
  accept() {
    const [fd, peer] = call('accept', wsp.wspAccept, this._fd);
    return [Socket.fromFd(fd, this.family, this.type, this.protocol), fromWitAddress(peer)];
  }

  /**
   * WSPConnect to `address` (policy `connect` grant). A non-blocking
   * stream connect throws WSAEWOULDBLOCK and completes in the background
   * (FD_CONNECT).
   */
  connect(address) {
    call('connect', wsp.wspConnect, this._fd, toWitAddress(address, this.family));
  }

  /**
   * WSPSend of one buffer (or of several: an array of buffers goes out as
   * one write, as Winsock's WSABUF array).
   *
   * @param {Uint8Array|string|Array<Uint8Array|string>} data
   * @param {number} [flags=0] MSG_* bits
   * @param {Overlapped} [overlapped] an overlapped send (SPEC SE-7): on a
   *   socket made with WSA_FLAG_OVERLAPPED; WSA_IO_PENDING when it completes later
   * @returns {number} the bytes sent
   */
  send(data, flags = 0, overlapped = undefined) {
    const [bytes, lengths] = wsabuf(data);
    const witFlags = toWitFlags(MSG_BITS, flags, 'send');
    return call('send', wsp.wspSend, this._fd, bytes, lengths, witFlags, witOverlapped(overlapped));
  }

  /** WSPSend until every byte of `data` is sent (blocking sockets). */
  sendAll(data, flags = 0) {
    let bytes = toBytes(data);
    while (bytes.length > 0) {
      const n = this.send(bytes, flags);
      bytes = bytes.subarray(n);
    }
  }

  /**
   * WSPSendTo: one datagram to `address`.
   *
   * @returns {number} the bytes sent
   */
  sendTo(data, address, flags = 0, overlapped = undefined) {
    const [bytes, lengths] = wsabuf(data);
    const witFlags = toWitFlags(MSG_BITS, flags, 'sendto');
    const to = toWitAddress(address, this.family);
    return call('sendto', wsp.wspSendTo, this._fd, bytes, lengths, witFlags, to, witOverlapped(overlapped));
  }

  /**
   * WSPRecv of up to `maxLength` bytes; empty when the peer closed.
   *
   * @param {number} [maxLength=65536]
   * @param {number} [flags=0] MSG_PEEK, MSG_OOB, MSG_WAITALL
   * @returns {Uint8Array}
   */
  recv(maxLength = 65536, flags = 0, overlapped = undefined) {
    const witFlags = toWitFlags(MSG_BITS, flags, 'recv');
    return asUint8Array(call('recv', wsp.wspRecv, this._fd, maxLength >>> 0, witFlags, witOverlapped(overlapped)));
  }

  /**
   * WSPRecvFrom: one datagram and its sender.
   *
   * @returns {[Uint8Array, SocketAddress]}
   */
  recvFrom(maxLength = 65536, flags = 0, overlapped = undefined) {
    const witFlags = toWitFlags(MSG_BITS, flags, 'recvfrom');
    const [data, from] = call('recvfrom', wsp.wspRecvFrom, this._fd, maxLength >>> 0, witFlags, witOverlapped(overlapped));
    return [asUint8Array(data), fromWitAddress(from)];
  }

  /**
   * WSPGetOverlappedResult: the outcome of the overlapped operation
   * `token`; with `wait`, waits while it pends (else WSA_IO_INCOMPLETE).
   *
   * @returns {{bytes: number, data: Uint8Array, sender: SocketAddress|null}}
   */
  overlappedResult(token, wait = false) {
    const r = call('overlapped-result', wsp.wspGetOverlappedResult, this._fd, token, wait);
    return {
      bytes: r.bytes,
      data: asUint8Array(r.data),
      sender: r.sender == null ? null : fromWitAddress(r.sender),
    };
  }

  /** WSPShutdown with SD_RECEIVE, SD_SEND or SD_BOTH. */
  shutdown(how = SD_BOTH) {
    call('shutdown', wsp.wspShutdown, this._fd, lookup(SHUTDOWN_CASES, how, 'shutdown'));
  }

  /** WSPCloseSocket. Closing a closed socket does nothing. */
  close() {
    const fd = this.detach();
    if (fd >= 0) call('close', wsp.wspCloseSocket, fd);
  }

  /**
   * WSPIoctl(FIONBIO): `false` makes the socket non-blocking. A socket
   * registered with {@link EventQueue#select} cannot be made blocking
   * again (WSAEINVAL).
   */
  setBlocking(blocking) {
    call('ioctl', wsp.wspIoctl, this._fd, { tag: 'fionbio', val: !blocking });
  }

  /** WSPIoctl(FIONREAD): the bytes one receive would return at once. */
  bytesReadable() {
    return this.ioctl({ tag: 'fionread' }).val;
  }

  /** WSPIoctl(SIOCATMARK): true when no out-of-band data is pending. */
  atMark() {
    return this.ioctl({ tag: 'siocatmark' }).val;
  }

  /**
   * WSPIoctl with a WIT `ioctl-command` (`{tag: 'sio-get-qos'}`, ...);
   * returns the WIT `ioctl-result` (`{tag: 'bytes', val: 12}`, ...).
   */
  ioctl(command) {
    return call('ioctl', wsp.wspIoctl, this._fd, command);
  }

  /**
   * WSPGetSockOpt: the value of option `name`, a WIT `sockopt-name`
   * (`'reuse-address'`, `'receive-buffer'`, `'error'`, ...).
   */
  getOption(name) {
    const v = call('getsockopt', wsp.wspGetSockOpt, this._fd, name);
    return name === 'error' ? (v.val == null ? 0 : ERRNO_OF_CASE.get(v.val)) : none(v.val);
  }

  /** WSPSetSockOpt: sets option `name` (a WIT `sockopt-name`) to `value`. */
  setOption(name, value) {
    const val = name === 'connect-data' ? toBytes(value) : value;
    call('setsockopt', wsp.wspSetSockOpt, this._fd, { tag: name, val });
  }

  /** WSPGetSockName: the local address. */
  localAddress() {
    return fromWitAddress(call('getsockname', wsp.wspGetSockName, this._fd));
  }

  /** WSPGetPeerName: the connected peer's address. */
  peerAddress() {
    return fromWitAddress(call('getpeername', wsp.wspGetPeerName, this._fd));
  }

  /**
   * WSPJoinLeaf: joins `address` (an IP multicast group, or a rooted
   * multipoint peer) as JL_SENDER_ONLY, JL_RECEIVER_ONLY or JL_BOTH.
   *
   * @param {object} [options]
   * @param {Uint8Array|string} [options.callerData] rooted multipoint only
   * @param {number} [options.calleeCapacity=0] largest callee data accepted
   * @returns {[Socket, Uint8Array]} the leaf (this socket itself on a leaf
   *   socket, a new one on a c_root socket) and the callee data
   */
  joinLeaf(address, role = JL_BOTH, { callerData, calleeCapacity = 0 } = {}) {
    const r = call(
      'join-leaf',
      wsp.wspJoinLeaf,
      this._fd,
      toWitAddress(address, this.family),
      callerData === undefined ? undefined : toBytes(callerData),
      calleeCapacity >>> 0,
      undefined,
      undefined,
      lookup(JOIN_CASES, role, 'join-leaf'),
    );
    const leaf = r.socket === this._fd ? this : Socket.fromFd(r.socket, this.family, this.type, this.protocol);
    return [leaf, asUint8Array(r.calleeData)];
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Socket.prototype[Symbol.dispose] = Socket.prototype.close;
}

/**
 * WSPSocket(af, type, protocol, NULL, 0, flags): a new {@link Socket}.
 */
export function socket(af = AF_INET, type = SOCK_STREAM, protocol = 0, flags = 0) {
  return new Socket(af, type, protocol, flags);
}

/** Buffers as WSPSend takes them (a WSABUF array): bytes back to back and lengths. */
function wsabuf(data) {
  if (!Array.isArray(data) || (data.length > 0 && typeof data[0] === 'number')) {
    const bytes = toBytes(data);
    return [bytes, [bytes.length]];
  }
  const parts = data.map(toBytes);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return [bytes, parts.map((p) => p.length)];
}

/**
 * @typedef {object} Overlapped the overlapped argument of a send or
 *   receive (WSAOVERLAPPED and its completion routine, SPEC SE-7)
 * @property {EventQueue} queue where the completion is posted
 * @property {number} msg the message id of the completion
 * @property {number|bigint} token the guest's name for the operation
 */

function witOverlapped(o) {
  if (o === undefined || o === null) return undefined;
  return { token: o.token, queue: o.queue instanceof EventQueue ? o.queue.raw : o.queue, msg: o.msg >>> 0 };
}

/**
 * Why the policy refused this guest's latest denied call (WSAEACCES),
 * naming the missing grant; null if nothing was denied. Not a Winsock call.
 *
 * @returns {string|null}
 */
export function lastDenial() {
  return none(wsp.lastDenial());
}

/**
 * WSPEnumProtocols: the host's protocol catalogue (WSAPROTOCOL_INFO
 * records: `serviceFlags`, `catalogEntryId`, `addressFamily`, `socketType`,
 * `protocol`, `maxMessageSize`, `name`), only entries of `protocols`
 * (IPPROTO_* numbers) when given.
 */
export function enumProtocols(protocols = undefined) {
  return wsp.wspEnumProtocols(protocols === undefined || protocols === null ? undefined : protocols);
}

// --- WSPAsyncSelect ----------------------------------------------------------------------

/** WSAGETSELECTEVENT: the FD_* event of a message's lParam. */
export function WSAGETSELECTEVENT(lparam) {
  return lparam & 0xffff;
}

/** WSAGETSELECTERROR: the Winsock error of a message's lParam (0 for none). */
export function WSAGETSELECTERROR(lparam) {
  return lparam >>> 16;
}

/**
 * One posted message (WSPAsyncSelect, SPEC AS-1), in Winsock numbers:
 * `msg` the message id given to {@link EventQueue#select}, `socket` the
 * descriptor (wParam), `event` the single FD_* bit, `error` the Winsock
 * error number (0 for none), `lparam` the packed `error << 16 | event`.
 * `completion` is `{token, bytes}` for the completion of an overlapped
 * operation (then `event` is 0), else null.
 */
export class Event {
  constructor(m) {
    /** The message id (wMsg). */
    this.msg = m.msg;
    /** The socket descriptor (wParam). */
    this.socket = m.socket;
    /** The FD_* event (WSAGETSELECTEVENT). */
    this.event = fromWitFlags(FD_BITS, m.event);
    /** The Winsock error (WSAGETSELECTERROR), 0 for none. */
    this.error = m.error == null ? 0 : ERRNO_OF_CASE.get(m.error);
    /** The packed lParam. */
    this.lparam = m.lparam;
    /** `{token, bytes}` of an overlapped operation's completion, or null. */
    this.completion = m.completion == null
      ? null
      : { token: u64ToNumber(m.completion.token), bytes: m.completion.bytes };
  }

  /** Whether this is FD_* event `fd`. */
  is(fd) {
    return this.event === fd;
  }

  /** The error as a WsaError, or null. */
  get wsaError() {
    return this.error === 0 ? null : new WsaError(this.error);
  }
}

/**
 * A guest-owned message queue: the window WSPAsyncSelect posts to.
 *
 * `for (const ev of queue)` waits for each next {@link Event} and ends when
 * the queue is closed. Closing it ({@link EventQueue#close}) stops delivery.
 */
export class EventQueue {
  /** A queue of at most `capacity` (1..65536) messages. */
  constructor(capacity = 1024) {
    this._q = new MessageQueue(capacity >>> 0);
  }

  /** The WIT `message-queue` resource (for `wsp` calls and `readiness.js`). */
  get raw() {
    return this._q;
  }

  /**
   * WSPAsyncSelect(sock, this queue, msg, events): posts each of the FD_*
   * `events` as it occurs with message id `msg`. The socket becomes
   * non-blocking; `events` 0 cancels.
   *
   * @param {Socket|number} sock a Socket or a descriptor
   */
  select(sock, msg, events) {
    const fd = sock instanceof Socket ? sock.fd : sock;
    call('async-select', wsp.wspAsyncSelect, fd, this._q, msg >>> 0, toWitFlags(FD_BITS, events, 'async-select'));
  }

  /**
   * The oldest message, waiting up to `timeoutMs` milliseconds (forever
   * when omitted or null); null on time-out or once the queue is closed.
   *
   * @returns {Event|null}
   */
  get(timeoutMs = null) {
    const ms = timeoutMs === null || timeoutMs === undefined ? undefined : Math.max(0, Math.floor(timeoutMs));
    const m = this._q.get(ms);
    return m == null ? null : new Event(m);
  }

  /** The oldest message, left in the queue; never waits. */
  peek() {
    const m = this._q.peek();
    return m == null ? null : new Event(m);
  }

  /** Up to `max` messages already there, oldest first; never waits. */
  drain(max = 256) {
    return Array.from(this._q.drain(max >>> 0), (m) => new Event(m));
  }

  /** Messages waiting. */
  get length() {
    return this._q.len();
  }

  /** How often a message was held back because the queue was full. */
  overflows() {
    return Number(this._q.overflows());
  }

  /** Stops delivery: iteration ends and `get` returns null. */
  close() {
    this._q.close();
  }

  /** Waits for each next message; ends once the queue is closed. */
  *[Symbol.iterator]() {
    for (;;) {
      const ev = this.get();
      if (ev === null) return;
      yield ev;
    }
  }
}
