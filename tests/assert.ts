/**
 * Small assertion helpers for tests that need no device (JSR's std/assert is not reachable
 * here, so the suite keeps its own).
 */
import { ShapeError } from "../lib/graph/mod.ts";

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Deep equality through JSON; typed arrays compare as plain arrays. */
export function assertEquals(actual: unknown, expected: unknown): void {
  const a = JSON.stringify(actual, jsonable);
  const e = JSON.stringify(expected, jsonable);
  if (a !== e) throw new Error(`expected ${e}\n     got ${a}`);
}

// Typed arrays serialize as index-keyed objects; compare them as plain arrays instead.
function jsonable(_k: string, v: unknown): unknown {
  return ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v;
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

function checkError<E extends Error>(
  what: string,
  type: ErrorClass<E>,
  err: unknown,
  needles: string[],
): E {
  if (!(err instanceof type)) throw new Error(`${what}: expected a ${type.name}, got ${err}`);
  for (const s of needles) {
    if (!err.message.includes(s)) {
      throw new Error(`${what}: message '${err.message}' does not mention '${s}'`);
    }
  }
  return err;
}

/** `f` must throw an instance of `type` whose message mentions every needle; returns it. */
export function expectError<E extends Error>(
  what: string,
  type: ErrorClass<E>,
  f: () => unknown,
  ...needles: string[]
): E {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  return checkError(what, type, err, needles);
}

/** `expectError` for a function that rejects instead of throwing. */
export async function expectRejection<E extends Error>(
  what: string,
  type: ErrorClass<E>,
  f: () => Promise<unknown>,
  ...needles: string[]
): Promise<E> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  return checkError(what, type, err, needles);
}

/** `f` must throw a ShapeError whose message mentions every needle. */
export function expectShapeError(what: string, f: () => unknown, ...needles: string[]) {
  expectError(what, ShapeError, f, ...needles);
}
