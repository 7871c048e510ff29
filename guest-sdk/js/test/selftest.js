/**
 * A self-test of the JavaScript SDK, run as a plugin (both engines):
 * addresses, UTF-8, errors, a UDP socket, options, the event queue, and a
 * stress loop over the calls whose argument memory build.mjs frees in
 * StarlingMonkey's bindings (strings, lists, argument areas). Prints `ok
 * ...` and exits 0, or prints each failure and exits 1.
 *
 *     guest-sdk/js/test/run.sh            # builds and runs it with both engines
 */

import * as wasp from '../wasp.js';
import { WsaError } from '../wasp.js';
import { command, print } from '../cli.js';
let failures = 0;
function check(what, got, want) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) { failures++; print(`FAIL ${what}: got ${g} want ${w}`); }
}
function throwsWsa(what, fn, errno) {
  try { fn(); failures++; print(`FAIL ${what}: no error`); }
  catch (e) { if (!(e instanceof WsaError) || e.errno !== errno) { failures++; print(`FAIL ${what}: ${e} ${e && e.stack}`); } }
}
export const run = command((args) => {
  const n = Number(args[0] || 2000);
  // addresses
  check('v4', String(wasp.parseAddress('127.0.0.1:80')), '127.0.0.1:80');
  check('v6', String(wasp.parseAddress('[::1]:80')), '[::1]:80');
  check('v6 long', String(wasp.parseAddress('[2001:db8:0:0:1:0:0:1]:1')), '[2001:db8::1:0:0:1]:1');
  check('v6 mapped', String(wasp.parseAddress({ host: '::ffff:1.2.3.4', port: 5 })), '[::ffff:1.2.3.4]:5');
  check('wild4', String(wasp.parseAddress({ port: 9 })), '0.0.0.0:9');
  check('wild6', String(wasp.parseAddress({ host: '', port: 9 }, wasp.AF_INET6)), '[::]:9');
  check('arr', String(wasp.parseAddress(['10.0.0.1', 7])), '10.0.0.1:7');
  check('wit6', wasp.toWitAddress('[fe80::1%2]:7').val.address, [0xfe80, 0, 0, 0, 0, 0, 0, 1]);
  check('utf8', Array.from(wasp.utf8Encode('aé€😀')), [97, 195, 169, 226, 130, 172, 240, 159, 152, 128]);
  check('utf8 back', wasp.utf8Decode(wasp.utf8Encode('aé€😀')), 'aé€😀');
  check('errname', [new WsaError(10013).code, new WsaError('WSA_IO_PENDING').errno, new WsaError('wsaewouldblock').wouldBlock, wasp.errorName(997)], ['WSAEACCES', 997, true, 'WSA_IO_PENDING']);
  // sockets
  const u = new wasp.Socket(wasp.AF_INET, wasp.SOCK_DGRAM, wasp.IPPROTO_UDP);
  u.bind('127.0.0.1:0');
  const me = u.localAddress();
  check('local', me.host, '127.0.0.1');
  check('sendTo', u.sendTo(['ab', new Uint8Array([99]), 'd'], me), 4);
  check('readable', u.bytesReadable() >= 4, true);
  const [d, from] = u.recvFrom(64);
  check('recvFrom', [wasp.utf8Decode(d), from.port], ['abcd', me.port]);
  u.setOption('receive-buffer', 65536);
  check('rcvbuf', typeof u.getOption('receive-buffer'), 'number');
  check('so_error', u.getOption('error'), 0);
  check('type', u.getOption('socket-type'), wasp.SOCK_DGRAM);
  throwsWsa('peer', () => u.peerAddress(), wasp.WSAENOTCONN);
  throwsWsa('flags', () => u.send('x', 0x1000), wasp.WSAEINVAL);
  throwsWsa('notsock', () => wasp.Socket.fromFd(99999).close(), wasp.WSAENOTSOCK);
  const protos = wasp.enumProtocols([wasp.IPPROTO_UDP]);
  check('enum', protos.length >= 1 && protos.every((p) => p.protocol === wasp.IPPROTO_UDP), true);
  // queue
  const q = new wasp.EventQueue(8);
  q.select(u, 7, wasp.FD_READ | wasp.FD_WRITE);
  const ev = q.get(1000);
  check('event', [ev.msg, ev.socket, ev.event, ev.error, wasp.WSAGETSELECTEVENT(ev.lparam)], [7, u.fd, wasp.FD_WRITE, 0, wasp.FD_WRITE]);
  check('timeout', q.get(10), null);
  check('len', q.length, 0);
  check('overflows', q.overflows(), 0);
  throwsWsa('blocking again', () => u.setBlocking(true), wasp.WSAEINVAL);
  q.select(u, 7, 0);
  q.close();
  let iterated = 0; for (const e of q) iterated++;
  check('closed iter', iterated, 0);
  // stress the patched bindings: strings, lists, argument areas
  const info = protos[0];
  const t = Date.now();
  for (let i = 0; i < n; i++) {
    const s = wasp.wsp.wspSocket(wasp.FROM_PROTOCOL_INFO, wasp.FROM_PROTOCOL_INFO, wasp.FROM_PROTOCOL_INFO, info, 0, {});
    wasp.wsp.wspCloseSocket(s);
    wasp.enumProtocols([wasp.IPPROTO_TCP, wasp.IPPROTO_UDP]);
    u.sendTo(new Uint8Array(20000), me);
    u.recv(65536);
    try { u.ioctl({ tag: 'sio-set-qos', val: { sending: flow(), receiving: flow(), providerSpecific: new Uint8Array(1000) } }); } catch (e) { if (!(e instanceof WsaError)) throw e; }
  }
  check('stress alive', wasp.utf8Decode(wasp.utf8Encode('still ok')), 'still ok');
  u.close();
  u.close();
  print(`${failures === 0 ? 'ok' : 'FAILED'} (${failures} failures, stress ${n} in ${Date.now() - t} ms)`);
  return failures === 0 ? 0 : 1;
});
function flow() {
  return { tokenRate: 0, tokenBucketSize: 0, peakBandwidth: 0, latency: 0, delayVariation: 0, serviceType: 'best-effort', maxSduSize: 0, minimumPolicedSize: 0 };
}
