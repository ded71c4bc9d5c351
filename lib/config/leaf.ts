/**
 * The leaf types of the experiment schema and of the models' option declarations
 * (lib/models/options.ts), each with the phrase its error messages and the README use ("must be
 * a positive integer"), and the introspection that reads those phrases back.
 *
 * A module of its own, with no dependency but zod, so that lib/models can declare its options
 * in the schema's vocabulary without importing the schema (which imports the model registry).
 */
import { z } from "../deps.ts";

/** What each leaf schema expects, in words; wrappers (default, nullable) are unwrapped first. */
const PHRASES = new WeakMap<object, string>();

/**
 * A schema of one value as model option declarations hold it: a zod schema (`z` of lib/deps.ts,
 * or a helper below). Typed by the two members the declarations rely on, so that the public API
 * (lib/models/options.ts) does not name zod's own types.
 */
export interface ValueSchema<T = unknown> {
  /** The type of a valid value (type-level only, as zod declares it). */
  readonly _output: T;
  /** Whether `v` is valid (zod's result object; only `success` is read). */
  safeParse(v: unknown): { success: boolean };
}

/** Records `phrase` as what `s` expects, for messages and documentation; returns `s`. */
export function expects<T extends z.ZodType>(s: T, phrase: string): T {
  PHRASES.set(s, phrase);
  return s;
}

/** The phrase recorded for exactly `s` (no unwrapping), if any. */
export function phraseOf(s: z.ZodType): string | undefined {
  return PHRASES.get(s);
}

/** An integer > 0. */
export const posInt = (): z.ZodNumber => expects(z.number().int().positive(), "a positive integer");
/** An integer >= 0. */
export const nonNegInt = (): z.ZodNumber => expects(z.number().int().min(0), "an integer >= 0");
/** Any integer. */
export const int = (): z.ZodNumber => expects(z.number().int(), "an integer");
/** A number > 0. */
export const posNum = (): z.ZodNumber => expects(z.number().positive(), "a positive number");
/** A number >= 0. */
export const nonNegNum = (): z.ZodNumber => expects(z.number().min(0), "a number >= 0");
/** A number in [0, 1): rates and smoothing factors. */
export const rate = (): z.ZodNumber => expects(z.number().min(0).lt(1), "a number in [0, 1)");
/** A boolean. */
export const bool = (): z.ZodBoolean => expects(z.boolean(), "true or false");
/** Any string. */
export const text = (): z.ZodString => expects(z.string(), "a string");
/** A non-empty string (a path). */
export const path = (): z.ZodString => expects(z.string().min(1), "a non-empty string");
/** A non-empty string or null. */
export const nullablePath = (): z.ZodNullable<z.ZodString> =>
  expects(z.string().min(1).nullable(), "a non-empty string or null");

/** Strips default, prefault and optional wrappers. */
export function unwrapSchema(s: z.ZodType): z.ZodType {
  while (
    s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional
  ) s = s.unwrap() as z.ZodType;
  return s;
}

/** What a schema expects, in words ("a positive integer", `one of "a", "b"`, "a mapping"). */
export function expectsOf(schema: ValueSchema): string {
  // Every ValueSchema is a zod schema (see there).
  let s = schema as unknown as z.ZodType;
  for (;;) {
    const p = PHRASES.get(s);
    if (p) return p;
    const inner = unwrapSchema(s);
    if (inner === s) break;
    s = inner;
  }
  if (s instanceof z.ZodNullable) return `${expectsOf(s.unwrap() as z.ZodType)} or null`;
  const choices = choicesOf(s);
  if (choices) return `one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`;
  if (s instanceof z.ZodObject || s instanceof z.ZodDiscriminatedUnion) return "a mapping";
  if (s instanceof z.ZodArray || s instanceof z.ZodTuple) return "a list";
  return "a valid value";
}

/** The allowed values of an enum or literal schema (after unwrapping), else undefined. */
export function choicesOf(schema: z.ZodType): (string | number)[] | undefined {
  const s = unwrapSchema(schema);
  if (s instanceof z.ZodEnum) return s.options as (string | number)[];
  if (s instanceof z.ZodLiteral) return [...s.values] as (string | number)[];
  return undefined;
}

/** A value for a message: JSON, cut at 60 characters; `nothing` for undefined. */
export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
