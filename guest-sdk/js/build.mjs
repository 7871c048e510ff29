#!/usr/bin/env node
/**
 * Builds a wasp plugin from a JavaScript module:
 *
 *     node guest-sdk/js/build.mjs ENTRY.js -o OUT.wasm [--engine starlingmonkey|quickjs]
 *
 * ENTRY.js is an ES module that exports `run` (wasi:cli/run; see cli.js)
 * and imports the SDK (wasp.js, cli.js, readiness.js) with relative paths.
 *
 * - `starlingmonkey` (default): componentize-js 0.23 (SpiderMonkey), world
 *   `wasp:spi/plugin-command-js`, its `http` and `fetch-event` features off
 *   (wasp provides no wasi:http). About 12 MiB.
 * - `quickjs`: componentize-qjs (QuickJS-ng) with its non-async runtime
 *   (wasp's wasmtime has no component-model-async), world
 *   `wasp:spi/plugin-command-js-quickjs` (no readiness.js). About 1.7 MiB.
 *
 * The worlds are those of worlds-js.wit, added to a temporary copy of the
 * repository's wit/ (`--wit DIR` to use another copy of it). Relative
 * imports are resolved at build time from the nearest directory holding
 * both ENTRY.js and this SDK, which the engine sees (read-only) while it
 * pre-initialises the module.
 *
 * As a module: `import { build } from './build.mjs'`.
 */

import { cpSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_DIR = dirname(fileURLToPath(import.meta.url));
const DEFAULT_WIT = resolve(SDK_DIR, '..', '..', 'wit');

/** The world of each engine, from worlds-js.wit. */
export const WORLDS = {
  starlingmonkey: 'wasp:spi/plugin-command-js',
  quickjs: 'wasp:spi/plugin-command-js-quickjs',
};

const ENGINE_NAMES = { starlingmonkey: 'starlingmonkey', sm: 'starlingmonkey', quickjs: 'quickjs', qjs: 'quickjs' };

function commonAncestor(a, b) {
  const pa = resolve(a).split(sep);
  const pb = resolve(b).split(sep);
  let n = 0;
  while (n < pa.length && n < pb.length && pa[n] === pb[n]) n++;
  return pa.slice(0, n).join(sep) || sep;
}

/**
 * Builds `entry` into a component.
 *
 * @param {object} opts
 * @param {string} opts.entry the ES module
 * @param {string} [opts.out] where to write the component
 * @param {'starlingmonkey'|'quickjs'} [opts.engine='starlingmonkey']
 * @param {string} [opts.wit] the wasp WIT directory (default: the repository's)
 * @param {boolean} [opts.freeImportArguments=true] StarlingMonkey: free the
 *   memory of each import call's arguments after the call (see
 *   {@link freeImportArgumentMemory}); false builds the bindings as
 *   componentize-js 0.23 makes them, which leak every byte sent
 * @returns {Promise<{component: Uint8Array, seconds: number}>}
 */
export async function build({ entry, out, engine = 'starlingmonkey', wit = DEFAULT_WIT, freeImportArguments = true }) {
  const backend = ENGINE_NAMES[engine];
  if (!backend) throw new Error(`unknown engine ${engine}: starlingmonkey or quickjs`);
  entry = resolve(entry);
  if (!existsSync(entry)) throw new Error(`no such file: ${entry}`);
  const root = commonAncestor(dirname(entry), SDK_DIR);
  if (root === sep) {
    throw new Error(`${entry} and the SDK (${SDK_DIR}) share no directory but /: put the plugin beside the SDK's tree`);
  }

  // The wasp WIT plus the worlds of worlds-js.wit, in a scratch copy.
  const scratch = mkdtempSync(join(tmpdir(), 'wasp-js-build-'));
  const started = Date.now();
  try {
    const witDir = join(scratch, 'wit');
    cpSync(resolve(wit), witDir, { recursive: true });
    copyFileSync(join(SDK_DIR, 'worlds-js.wit'), join(witDir, 'worlds-js.wit'));

    let component;
    if (backend === 'starlingmonkey') {
      const { componentize } = await import('@bytecodealliance/componentize-js');
      if (freeImportArguments) await patchSplicer();
      // componentize-js maps the current directory as the module root when
      // it holds the entry: make that the directory shared with the SDK.
      const cwd = process.cwd();
      process.chdir(root);
      try {
        ({ component } = await componentize({
          sourcePath: entry,
          witPath: witDir,
          worldName: WORLDS.starlingmonkey,
          disableFeatures: ['http', 'fetch-event'],
        }));
      } finally {
        process.chdir(cwd);
      }
    } else {
      const { componentize } = await import('componentize-qjs');
      ({ component } = await componentize({
        witPath: witDir,
        jsSource: readFileSync(entry, 'utf8'),
        jsPath: entry,
        moduleRoot: root,
        world: WORLDS.quickjs,
        sync: true,
      }));
    }
    const seconds = (Date.now() - started) / 1000;
    if (out) writeFileSync(resolve(out), component);
    return { component, seconds };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

// --- StarlingMonkey: the import-argument leak of componentize-js 0.23 -----------

/**
 * componentize-js 0.23's generated bindings lower the arguments of an
 * import call (the bytes of `wsp-send`, its `lengths`, strings, argument
 * areas) into memory from `$realloc` and never free it: a plugin leaks every
 * byte it sends (a 64 MiB guest dies after ~50 MB sent). The host has
 * copied the arguments when the call returns, so this frees each such
 * allocation right after its call, with the bindings' own `$dealloc`
 * (JS_free; its results are freed that way already).
 *
 * Works on the text of the generated bindings, one function at a time:
 * `var P = $realloc(0, 0, ALIGN, SIZE);` and `var P = encodeRes.ptr;
 * var L = encodeRes.len;` (strings; an empty one is not allocated) before
 * a one-line `$import_...(...);` call.
 *
 * @param {string} js the bindings
 * @returns {{js: string, calls: number, frees: number}}
 */
export function freeImportArgumentMemory(js) {
  const lines = js.split('\n');
  const out = [];
  let pending = [];
  let calls = 0;
  let frees = 0;
  // A top-level function, a class, or a method (two spaces in, not a statement).
  const functionStart =
    /^(?:async )?function |^class |^ {2}(?!(?:if|for|while|switch|catch|with|return)\b)(?:[\w$]+|\[[\w$.]+\]) ?\(.*\) ?\{\s*$/;
  const alloc = /^\s*var ([\w$]+) = \$realloc\(0, 0, (\d+), ([^;]+)\);\s*$/;
  const strPtr = /^\s*var ([\w$]+)\s*=\s*encodeRes\.ptr;\s*$/;
  const strLen = /^\s*var ([\w$]+)\s*=\s*encodeRes\.len;\s*$/;
  const importCall = /^(\s*)(?:ret = )?\$import_[\w$]+\(.*\);\s*$/;
  let stringPtr = null;
  for (const line of lines) {
    if (functionStart.test(line)) pending = [];
    let m;
    if ((m = alloc.exec(line))) {
      pending.push(`if (${m[1]} !== undefined) $dealloc(${m[1]}, ${m[3]}, ${m[2]});`);
    } else if ((m = strPtr.exec(line))) {
      stringPtr = m[1];
    } else if ((m = strLen.exec(line)) && stringPtr !== null) {
      pending.push(`if (${stringPtr} !== undefined && ${m[1]} > 0) $dealloc(${stringPtr}, ${m[1]}, 1);`);
      stringPtr = null;
    }
    out.push(line);
    if ((m = importCall.exec(line))) {
      calls++;
      for (const free of pending) {
        out.push(`${m[1]}${free}`);
        frees++;
      }
      pending = [];
    }
  }
  return { js: out.join('\n'), calls, frees };
}

let splicerPatched = false;

/** Makes componentize-js run {@link freeImportArgumentMemory} on its bindings. */
async function patchSplicer() {
  if (splicerPatched) return;
  // componentize.js imports its splicer as ../lib/...; the same URL gives
  // the same module instance (the package's exports do not list it).
  const main = import.meta.resolve('@bytecodealliance/componentize-js');
  const { splicer } = await import(new URL('../lib/spidermonkey-embedding-splicer.js', main).href);
  const spliceBindings = splicer.spliceBindings;
  splicer.spliceBindings = function (...args) {
    const result = spliceBindings.apply(this, args);
    const patched = freeImportArgumentMemory(result.jsBindings);
    if (patched.calls === 0) {
      process.stderr.write('build.mjs: warning: no import calls found in the bindings; argument memory is not freed\n');
    }
    return { ...result, jsBindings: patched.js };
  };
  splicerPatched = true;
}

function usage(message) {
  if (message) process.stderr.write(`build.mjs: ${message}\n`);
  process.stderr.write('usage: node build.mjs ENTRY.js -o OUT.wasm [--engine starlingmonkey|quickjs] [--wit DIR] [--no-free-import-arguments]\n');
  process.exit(2);
}

async function main(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '-o' || a === '--out') opts.out = value();
    else if (a === '--engine') opts.engine = value();
    else if (a === '--wit') opts.wit = value();
    else if (a === '--no-free-import-arguments') opts.freeImportArguments = false;
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (opts.entry === undefined) opts.entry = a;
    else usage(`one entry module only (${a})`);
  }
  if (!opts.entry || !opts.out) usage();
  const { component, seconds } = await build(opts);
  process.stderr.write(
    `build.mjs: ${opts.out}: ${component.length} bytes (${opts.engine ?? 'starlingmonkey'}, ${seconds.toFixed(1)} s)\n`,
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`build.mjs: ${e && e.message ? e.message : e}\n`);
    process.exit(1);
  });
}
