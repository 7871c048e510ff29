/**
 * js-echo: a single-threaded TCP echo server in JavaScript that serves many
 * connections from one message queue with WSPAsyncSelect.
 *
 *     wasp run js-echo.wasm --policy examples/js-echo/policy.toml -- [ADDR]
 *
 * Listens on ADDR (default 127.0.0.1:7000; port 0 picks one) and prints
 * `js-echo: listening on ADDR`. FD_ACCEPT on the listener accepts until
 * WSAEWOULDBLOCK; each connection is registered for FD_READ, FD_WRITE and
 * FD_CLOSE. Bytes that cannot be sent at once wait (at most MAX_PENDING per
 * connection) until FD_WRITE; while they wait the connection is not read
 * (FD_READ is re-enabled by the next recv, SPEC AS-9), so a slow client
 * never makes the plugin grow without bound.
 */

import {
  EventQueue, Socket, WsaError, lastDenial, parseAddress,
  FD_ACCEPT, FD_CLOSE, FD_READ, FD_WRITE, SOCK_STREAM, IPPROTO_TCP, WSAEWOULDBLOCK,
} from '../../guest-sdk/js/wasp.js';
import { command, eprint, print } from '../../guest-sdk/js/cli.js';

/** Message id of the listener. */
const WM_ACCEPT = 1;
/** Message id of the connections. */
const WM_CONNECTION = 2;
/** Largest receive. */
const CHUNK = 64 * 1024;
/** Most bytes waiting to be echoed per connection before reading pauses. */
const MAX_PENDING = 256 * 1024;

class Connection {
  constructor(socket) {
    this.socket = socket;
    /** Received bytes not sent back yet. */
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Sends what is pending; false when the socket is full (FD_WRITE follows). */
  flush() {
    while (this.pending.length > 0) {
      const head = this.pending[0];
      let n;
      try {
        n = this.socket.send(head);
      } catch (e) {
        if (WsaError.is(e, WSAEWOULDBLOCK)) return false;
        throw e;
      }
      this.pendingBytes -= n;
      if (n === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
    return true;
  }

  /** Reads what is there and echoes it; false once the peer has closed. */
  onRead() {
    while (this.pendingBytes < MAX_PENDING) {
      let data;
      try {
        data = this.socket.recv(CHUNK);
      } catch (e) {
        if (WsaError.is(e, WSAEWOULDBLOCK)) break;
        throw e;
      }
      if (data.length === 0) return false;
      this.pending.push(data);
      this.pendingBytes += data.length;
      // A receive that got less than it asked for emptied the socket:
      // FD_READ comes again when more arrives (SPEC AS-11).
      if (!this.flush() || data.length < CHUNK) break;
    }
    return true;
  }
}

function serve(address) {
  const addr = parseAddress(address);
  const queue = new EventQueue(4096);
  const listener = new Socket(addr.family, SOCK_STREAM, IPPROTO_TCP);
  listener.bind(addr);
  listener.listen(1024);
  queue.select(listener, WM_ACCEPT, FD_ACCEPT);
  print(`js-echo: listening on ${listener.localAddress()}`);

  /** The connections by descriptor. */
  const connections = new Map();
  const drop = (fd) => {
    const c = connections.get(fd);
    connections.delete(fd);
    try {
      c.socket.close();
    } catch {
      // already gone
    }
  };

  for (const ev of queue) {
    if (ev.msg === WM_ACCEPT) {
      for (;;) {
        let socket;
        try {
          [socket] = listener.accept();
        } catch (e) {
          // WSAEWOULDBLOCK: no more for now. WSAEMFILE and the like: the
          // connection stays pending; FD_ACCEPT comes again later.
          if (!WsaError.is(e, WSAEWOULDBLOCK)) eprint(`js-echo: accept: ${e.message}`);
          break;
        }
        try {
          queue.select(socket, WM_CONNECTION, FD_READ | FD_WRITE | FD_CLOSE);
        } catch (e) {
          eprint(`js-echo: select: ${e.message}`);
          socket.close();
          continue;
        }
        connections.set(socket.fd, new Connection(socket));
      }
    } else if (ev.msg === WM_CONNECTION) {
      const c = connections.get(ev.socket);
      if (c === undefined) continue;
      try {
        let open = true;
        if (ev.event === FD_READ) open = c.onRead();
        // Room again: send what waits, then read what was held back.
        else if (ev.event === FD_WRITE) open = c.flush() ? c.onRead() : true;
        else if (ev.event === FD_CLOSE) open = false;
        if (!open) {
          // Closed by the peer: echo what is left, then close.
          try {
            c.onRead();
            c.flush();
          } catch {
            // the peer is gone
          }
          drop(ev.socket);
        }
      } catch (e) {
        if (!(e instanceof WsaError)) throw e;
        drop(ev.socket);
      }
    }
  }
  return 0;
}

export const run = command((args) => {
  const address = args[0] ?? '127.0.0.1:7000';
  try {
    return serve(address);
  } catch (e) {
    eprint(`js-echo: ${e.message}`);
    const reason = lastDenial();
    if (reason !== null) eprint(`js-echo: denied because ${reason}`);
    return 1;
  }
});
