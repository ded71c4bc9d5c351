/**
 * Merging of configuration trees and `--set a.b=c` overrides.
 *
 * The one merge rule (used by `extends:` and by `--set`): mappings merge key by key, recursively;
 * anything else (a scalar, a list, null, or a mapping meeting a non-mapping) replaces what was
 * there. A `--set` value is parsed as one YAML scalar or flow value, so `train.epochs=2` is a
 * number, `model.plam=false` a boolean, `model.widths=[8,16]` a list and `data.root=` null;
 * `--set train.schedule={kind: constant}` merges into the schedule like an extending file would.
 */
import { isMap, isSeq, parseDocument } from "../deps.ts";
import { InputError } from "./errors.ts";

/** A key path: mapping keys, and list indices as numbers. */
export type KeyPath = (string | number)[];

/** One parsed `--set` override. */
export interface SetOverride {
  /** The argument as given, e.g. `train.epochs=2`; error messages start with `--set <spec>:`. */
  spec: string;
  /** The key path, e.g. ["train", "epochs"]. */
  path: string[];
  /** The parsed value. */
  value: unknown;
}

/** Where a merge replaced or merged a subtree, for callers that track positions. */
export interface MergeHooks {
  /** `over`'s value replaced (or added) the subtree at `path`. */
  replaced?(path: KeyPath, value: unknown): void;
  /** Two mappings met at `path` and are being merged key by key. */
  merged?(path: KeyPath): void;
}

/** Whether a value is a mapping (a plain object, not a list or null). */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Sets an own property, even one named `__proto__`. */
export function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Merges `over` into the mapping `base` in place (see the module doc for the rule) and returns
 * `base`. Values taken from `over` are copied, so later merges never alter `over`.
 */
export function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  hooks: MergeHooks = {},
  at: KeyPath = [],
): Record<string, unknown> {
  for (const key of Object.keys(over)) {
    const p = [...at, key];
    const b = Object.hasOwn(base, key) ? base[key] : undefined;
    const v = over[key];
    if (isMapping(b) && isMapping(v)) {
      hooks.merged?.(p);
      deepMerge(b, v, hooks, p);
    } else {
      setOwn(base, key, structuredClone(v));
      hooks.replaced?.(p, v);
    }
  }
  return base;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Rejects anything but YAML's plain data (strings, numbers, booleans, null, lists, mappings). */
function checkPlain(v: unknown, spec: string): void {
  if (v === null || ["string", "number", "boolean"].includes(typeof v)) {
    if (typeof v === "string" && v.includes("${")) throw dollarError(`--set ${spec}`);
    return;
  }
  if (Array.isArray(v)) return v.forEach((x) => checkPlain(x, spec));
  if (isMapping(v) && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.values(v).forEach((x) => checkPlain(x, spec));
  }
  throw new InputError(`--set ${spec}: only plain values are allowed (no tags)`);
}

/** The error for a `${...}` in a value: experiment files hold no variables or expressions. */
export function dollarError(where: string, key?: string): InputError {
  return new InputError(
    `${where}: ${key ? `'${key}' ` : ""}contains "\${": experiment values are plain data, with ` +
      "no variables or expressions. For the data set location leave data.root null to use the " +
      "LVIT_DATA environment variable, or set data.root to a path (--set data.root=/path).",
  );
}

/** Parses one `--set key.path=value` argument; a malformed one is an InputError. */
export function parseSet(spec: string): SetOverride {
  const eq = spec.indexOf("=");
  if (eq <= 0) {
    throw new InputError(
      `--set ${spec}: expected key.path=value, e.g. --set train.epochs=2`,
    );
  }
  const keyPath = spec.slice(0, eq).trim();
  const path = keyPath.split(".");
  if (!path.every((s) => SEGMENT.test(s))) {
    throw new InputError(
      `--set ${spec}: '${keyPath}' is not a key path (keys of letters, digits, '_' and '-' ` +
        "joined by '.', e.g. train.schedule.t0)",
    );
  }
  if (path[0] === "extends") {
    throw new InputError(`--set ${spec}: 'extends' can only be set in an experiment file`);
  }
  const text = spec.slice(eq + 1);
  if (text.includes("${")) throw dollarError(`--set ${spec}`);
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    throw new InputError(
      `--set ${spec}: cannot read the value as YAML: ${problem.message.split("\n")[0]}`,
    );
  }
  const c = doc.contents as { flow?: boolean } | null;
  if ((isMap(c) || isSeq(c)) && !c.flow) {
    throw new InputError(
      `--set ${spec}: the value reads as a YAML block ${isMap(c) ? "mapping" : "list"}; quote ` +
        `a string ('${text}'), or write a flow value ({a: 1}, [1, 2])`,
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new InputError(`--set ${spec}: cannot read the value: ${(e as Error).message}`);
  }
  checkPlain(value ?? null, spec);
  return { spec, path, value: value ?? null };
}

/** `{a: {b: value}}` for the path ["a", "b"]. */
export function nest(path: readonly string[], value: unknown): Record<string, unknown> {
  let v = value;
  for (let i = path.length - 1; i >= 0; i--) {
    const o: Record<string, unknown> = {};
    setOwn(o, path[i], v);
    v = o;
  }
  return v as Record<string, unknown>;
}

/**
 * Applies `--set` overrides in order to a raw (unvalidated) configuration, in place, and returns
 * it. Validation is the schema's job: lib/config/load.ts runs these before validating and reports
 * problems as `--set <spec>: ...`.
 */
export function applySets(
  config: Record<string, unknown>,
  sets: readonly string[],
): Record<string, unknown> {
  for (const spec of sets) {
    const s = parseSet(spec);
    deepMerge(config, nest(s.path, s.value));
  }
  return config;
}
