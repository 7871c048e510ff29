/**
 * The command side of a wasp plugin in JavaScript: its arguments, its
 * output and its `wasi:cli/run` export.
 *
 * ```js
 * import { command, print } from '../../guest-sdk/js/cli.js';
 * export const run = command((args) => {
 *   print(`hello ${args[0]}`);
 *   return 0;
 * });
 * ```
 *
 * It imports `wasi:cli/environment`, `stdout`, `stderr` and `exit`, which
 * the world `plugin-command-js` of `worlds-js.wit` adds to
 * `wasp:spi/plugin-command` (build.mjs builds against it). Output goes
 * straight to the WASI streams, unbuffered, the same in StarlingMonkey and
 * QuickJS (which has no `console`).
 *
 * @module wasp/cli
 */

import { getArguments } from 'wasi:cli/environment@0.2.12';
import { getStdout } from 'wasi:cli/stdout@0.2.12';
import { getStderr } from 'wasi:cli/stderr@0.2.12';
import { exit as wasiExit } from 'wasi:cli/exit@0.2.12';

import { WsaError, utf8Encode } from './wasp.js';

// Streams are taken on first use: the module's top level runs at build
// time (Wizer), where a handle would not survive into the component.
let stdout = null;
let stderr = null;

function write(stream, text) {
  const bytes = utf8Encode(text);
  // blocking-write-and-flush takes at most 4096 bytes at a time.
  for (let at = 0; at < bytes.length; at += 4096) {
    stream.blockingWriteAndFlush(bytes.subarray(at, at + 4096));
  }
}

function line(values) {
  return values.map((v) => (typeof v === 'string' ? v : String(v))).join(' ') + '\n';
}

/** Writes `values`, space-separated, and a newline to stdout (unbuffered). */
export function print(...values) {
  stdout ??= getStdout();
  write(stdout, line(values));
}

/** Writes `values`, space-separated, and a newline to stderr. */
export function eprint(...values) {
  stderr ??= getStderr();
  write(stderr, line(values));
}

/** The command line, program name first (`wasp run P.wasm -- a b`: `['P.wasm', 'a', 'b']`). */
export function argv() {
  return Array.from(getArguments());
}

/** The arguments after the program name. */
export function args() {
  return argv().slice(1);
}

/**
 * Ends the plugin: exit status 0 for `code` 0, else 1 (WASI 0.2 `exit`
 * carries success or failure only).
 */
export function exit(code = 0) {
  wasiExit(code === 0 ? { tag: 'ok' } : { tag: 'err' });
}

/**
 * The `wasi:cli/run` export of a plugin whose body is `main(args)`:
 * `export const run = command(main)`. `main` returns the exit status (0
 * or nothing for success). A WsaError it throws is printed to stderr as
 * `wasp: <call>: <number> <NAME>` and ends the plugin with status 1; so
 * does any other error, with its message.
 *
 * @param {(args: string[]) => number|void} main
 */
export function command(main) {
  return {
    run() {
      let code;
      try {
        code = main(args()) ?? 0;
      } catch (e) {
        if (e instanceof WsaError) {
          eprint(`wasp: ${e.message}`);
        } else {
          eprint(`wasp: ${e && e.stack ? `${e}\n${e.stack}` : String(e)}`);
        }
        code = 1;
      }
      if (code !== 0) exit(code);
    },
  };
}
