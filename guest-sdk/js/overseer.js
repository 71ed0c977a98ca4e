// Helpers for overseer agents in JavaScript: errors the caller can act on, log lines, and
// randomness, ids and time taken from the host on every call.
//
//   import * as overseer from './overseer.js';
//   throw overseer.invalidInput('give a name');
//   overseer.info('greeting number 3');
//   const orderId = overseer.newId();
//
// What runs at build time: componentize-js runs the module's top level once, when the
// component is built, and every call starts from a snapshot of the result. A time taken at the
// top level (`Date.now()`, `new Date()`) is the same on every call, of every instance, for the
// life of the version; randomness there (`Math.random()`, `crypto.randomUUID()`) fails the
// build. Make such values inside `handle`, from the host: `random()`, `randomInt()`, `shuffle()`, `newId()` and `nowMs()`
// below read WASI's random source and clock on each call. `overseer build` warns about the
// top-level cases it can see.
//
// The build puts this file (and any other local module `app.js` imports by `./…`) into the
// component with `app.js`.

import * as runtime from 'overseer:agent/runtime@0.1.0';

/** The input was malformed or out of range: the caller's mistake (422). Throw it. */
export function invalidInput(message) {
  return { tag: 'invalid-input', val: message };
}

/** The agent was not granted what it needed. Throw it. */
export function denied(message) {
  return { tag: 'denied', val: message };
}

/** A service the call needed is not available right now. Throw it. */
export function unavailable(message) {
  return { tag: 'unavailable', val: message };
}

/** The work was attempted and failed. Throw it. */
export function failed(message) {
  return { tag: 'failed', val: message };
}

export function debug(message) {
  runtime.log('debug', message);
}

export function info(message) {
  runtime.log('info', message);
}

export function warn(message) {
  runtime.log('warn', message);
}

export function error(message) {
  runtime.log('error', message);
}

/** A number in [0, 1) with 53 random bits from the host (WASI random), fresh on every call. */
export function random() {
  const words = new Uint32Array(2);
  crypto.getRandomValues(words);
  // 21 bits of the first word and 32 of the second: 53 bits, the precision of a double.
  return ((words[0] >>> 11) * 4294967296 + words[1]) / 9007199254740992;
}

/** An integer in [0, n), from the host's random source. */
export function randomInt(n) {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw invalidInput(`randomInt: ${n} is not a positive integer`);
  }
  return Math.floor(random() * n);
}

/** `items` shuffled in place (Fisher–Yates) with the host's randomness, and returned. */
export function shuffle(items) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** A random UUID (version 4, RFC 9562) from the host's random source, as text. */
export function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The host's wall clock, in milliseconds since the Unix epoch (a backtest's virtual time when
 * the agent is replayed). */
export function nowMs() {
  return Date.now();
}
