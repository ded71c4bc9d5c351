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

/** `f` must throw a ShapeError whose message mentions every needle. */
export function expectShapeError(what: string, f: () => unknown, ...needles: string[]) {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ShapeError)) throw new Error(`${what}: expected a ShapeError, got ${err}`);
  for (const s of needles) {
    if (!err.message.includes(s)) {
      throw new Error(`${what}: message '${err.message}' does not mention '${s}'`);
    }
  }
}
