/**
 * Waiting on an {@link EventQueue} together with other `wasi:io/poll`
 * pollables (e.g. a WSPAsyncSelect loop that also waits on stdin or a
 * clock).
 *
 * StarlingMonkey (componentize-js) only: componentize-qjs (QuickJS) 0.4
 * cannot pre-initialise a component that imports `wasp:spi/readiness`
 * (its Wizer linker rejects the `pollable` the interface uses: "mismatched
 * resource types"), so build.mjs builds QuickJS plugins against a world
 * without it.
 *
 * ```js
 * import { subscribe, poll } from '../../guest-sdk/js/readiness.js';
 * const ready = poll([subscribe(queue), timer]);  // indices of the ready ones
 * ```
 *
 * @module wasp/readiness
 */

import { subscribe as wspSubscribe } from 'wasp:spi/readiness@0.1.0';
import { poll as wasiPoll } from 'wasi:io/poll@0.2.12';

import { EventQueue } from './wasp.js';

/**
 * `subscribe(queue)` of `wasp:spi/readiness`: a `wasi:io/poll` pollable,
 * ready when a message waits in `queue` (or it is closed).
 *
 * @param {EventQueue} queue
 */
export function subscribe(queue) {
  return wspSubscribe(queue instanceof EventQueue ? queue.raw : queue);
}

/**
 * `wasi:io/poll.poll`: waits until at least one of `pollables` is ready;
 * the indices of those that are.
 *
 * @returns {number[]}
 */
export function poll(pollables) {
  return Array.from(wasiPoll(pollables));
}
