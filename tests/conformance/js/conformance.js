/**
 * The JavaScript guest of the conformance scenarios
 * (tests/conformance/SCENARIOS.md): prints exactly what the Rust guest
 * (tests/programs/src/bin/conformance.rs) prints.
 *
 * Built by build.sh with guest-sdk/js/build.mjs.
 */

import * as wasp from '../../../guest-sdk/js/wasp.js';
import { WsaError } from '../../../guest-sdk/js/wasp.js';
import { command, eprint, print } from '../../../guest-sdk/js/cli.js';

/** The message id of the listener's events. */
const WM_LISTENER = 1;
/** The message id of the connection's events. */
const WM_CONNECTION = 2;

/** An unexpected failure: what failed and its Winsock error. */
class Failure extends Error {
  constructor(what, error) {
    super(what);
    this.what = what;
    this.error = error;
  }
}

/** Calls `fn`; a WsaError becomes a Failure naming `what`. */
function on(what, fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof WsaError) throw new Failure(what, e);
    throw e;
  }
}

function loopback(port) {
  return { host: '127.0.0.1', port };
}

/** Echoes what waits on `connection`; the bytes echoed (0 for none). */
function echoWaiting(connection) {
  let data;
  try {
    data = connection.recv(4096);
  } catch (e) {
    if (WsaError.is(e, wasp.WSAEWOULDBLOCK)) return 0;
    if (e instanceof WsaError) throw new Failure('recv', e);
    throw e;
  }
  on('send', () => connection.sendAll(data));
  return data.length;
}

function tcpEcho(port) {
  const listener = on('socket', () => new wasp.Socket(wasp.AF_INET, wasp.SOCK_STREAM, wasp.IPPROTO_TCP));
  on('bind', () => listener.bind(loopback(port)));
  on('listen', () => listener.listen(8));
  const queue = new wasp.EventQueue(16);
  on('async-select', () => queue.select(listener, WM_LISTENER, wasp.FD_ACCEPT));
  print(`listening on 127.0.0.1:${port}`);
  let connection = null;
  let total = 0;
  for (const ev of queue) {
    if (ev.msg === WM_LISTENER && connection === null && ev.event === wasp.FD_ACCEPT) {
      [connection] = on('accept', () => listener.accept());
      on('async-select', () => queue.select(connection, WM_CONNECTION, wasp.FD_READ | wasp.FD_CLOSE));
      print('accepted');
    } else if (ev.msg === WM_CONNECTION && connection !== null) {
      if (ev.event === wasp.FD_READ) {
        total += echoWaiting(connection);
      } else if (ev.event === wasp.FD_CLOSE) {
        for (let n; (n = echoWaiting(connection)) > 0; ) total += n;
        print(`closed after ${total} bytes`);
        on('close', () => connection.close());
        on('close', () => listener.close());
        return;
      }
    }
  }
  throw new Failure('queue', new WsaError(wasp.WSAEINVAL));
}

function udp(port) {
  const sock = on('bind', () => new wasp.Socket(wasp.AF_INET, wasp.SOCK_DGRAM, wasp.IPPROTO_UDP));
  on('bind', () => sock.bind(loopback(0)));
  on('sendto', () => sock.sendTo('ping', loopback(port)));
  const [data, from] = on('recvfrom', () => sock.recvFrom(64));
  print(`received ${data.length} bytes "${wasp.utf8Decode(data)}" from ${from}`);
}

function denied(port) {
  const sock = on('socket', () => new wasp.Socket(wasp.AF_INET, wasp.SOCK_STREAM, wasp.IPPROTO_TCP));
  try {
    sock.connect(loopback(port));
  } catch (e) {
    if (!(e instanceof WsaError)) throw e;
    print(`connect: ${e.errno} ${e.code}`);
    print(`denial: ${wasp.lastDenial() ?? ''}`);
    return;
  }
  throw new Failure('connect succeeded', new WsaError(wasp.WSAEINVAL));
}

function multicast(group, port) {
  const flags = wasp.WSA_FLAG_MULTIPOINT_C_LEAF | wasp.WSA_FLAG_MULTIPOINT_D_LEAF;
  const af = group.includes(':') ? wasp.AF_INET6 : wasp.AF_INET;
  const sock = on('socket', () => new wasp.Socket(af, wasp.SOCK_DGRAM, wasp.IPPROTO_UDP, flags));
  const address = wasp.parseAddress({ host: group, port }, af);
  on('join-leaf', () => sock.joinLeaf(address, wasp.JL_BOTH));
  print(`joined ${address}`);
  on('send', () => sock.send('hello'));
  const [data] = on('recvfrom', () => sock.recvFrom(64));
  print(`received ${data.length} bytes "${wasp.utf8Decode(data)}"`);
}

function main(args) {
  const arg = (n) => (n < args.length ? args[n] : '');
  const port = (n) => Number.parseInt(arg(n), 10);
  const scenarios = {
    'tcp-echo': () => tcpEcho(port(1)),
    udp: () => udp(port(1)),
    denied: () => denied(port(1)),
    multicast: () => multicast(arg(1), port(2)),
  };
  const scenario = scenarios[arg(0)];
  if (scenario === undefined) {
    eprint(`unknown scenario ${JSON.stringify(arg(0))}`);
    return 2;
  }
  try {
    scenario();
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    print(`error: ${e.what} ${e.error.errno} ${e.error.code}`);
    return 1;
  }
  return 0;
}

/** wasi:cli/run: the scenario named by the first argument. */
export const run = command(main);
