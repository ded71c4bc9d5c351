/**
 * The experiment schema of the engine milestone (the full zod schema with `extends` and `--set`
 * is issue 6). Strict: unknown keys and wrong types fail with file:line:col and the key path.
 */
import { isMap, LineCounter, parseDocument } from "../deps.ts";

export interface Experiment {
  name: string;
  seed: number;
  /** auto (default): webgpu on a hardware adapter, cpu on a software adapter or none. */
  backend: "auto" | "webgpu" | "cpu";
  data: { kind: "blobs"; size: number; train: number; val: number; test: number };
  model: { name: "unet"; widths: number[] };
  train: { epochs: number; batch: number; lr: number };
}

/** A user error: reported as one paragraph without a stack trace, exit code 2. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

type Check = (v: unknown) => string | null;
const posInt: Check = (
  v,
) => (Number.isInteger(v) && (v as number) > 0 ? null : "a positive integer");
const posNum: Check = (
  v,
) => (typeof v === "number" && v > 0 && Number.isFinite(v) ? null : "a positive number");
const int: Check = (v) => (Number.isInteger(v) ? null : "an integer");
const str: Check = (v) => (typeof v === "string" && v.length > 0 ? null : "a non-empty string");
const oneOf =
  (...xs: string[]): Check => (v) => (xs.includes(v as string) ? null : `one of ${xs.join(", ")}`);
const intList: Check = (v) =>
  Array.isArray(v) && v.length >= 2 && v.every((x) => Number.isInteger(x) && x > 0)
    ? null
    : "a list of at least 2 positive integers";

type Schema = { [k: string]: Check | Schema };
/** Top-level keys that may be left out, with their defaults. */
const DEFAULTS: Partial<Experiment> = { backend: "auto" };
const SCHEMA: Schema = {
  name: str,
  seed: int,
  backend: oneOf("auto", "webgpu", "cpu"),
  data: { kind: oneOf("blobs"), size: posInt, train: posInt, val: posInt, test: posInt },
  model: { name: oneOf("unet"), widths: intList },
  train: { epochs: posInt, batch: posInt, lr: posNum },
};

/** Parses and validates an experiment file; every problem is reported with its position. */
export function parseExperiment(file: string, text: string): Experiment {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  const at = (node: unknown) => {
    const r = (node as { range?: number[] } | undefined)?.range;
    if (!r) return file;
    const { line, col } = lc.linePos(r[0]);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length) throw new InputError(`${file}: ${doc.errors[0].message}`);
  const errors: string[] = [];
  const walk = (node: unknown, schema: Schema, path: string) => {
    if (!isMap(node)) {
      errors.push(`${at(node)}: ${path || "the file"} must be a mapping`);
      return;
    }
    const seen = new Set<string>();
    for (const item of node.items) {
      const key = String((item.key as { value?: unknown })?.value ?? item.key);
      const full = path ? `${path}.${key}` : key;
      seen.add(key);
      const rule = Object.hasOwn(schema, key) ? schema[key] : undefined;
      if (!rule) {
        errors.push(
          `${at(item.key)}: unknown key '${full}'; allowed: ${Object.keys(schema).join(", ")}`,
        );
      } else if (typeof rule === "function") {
        const v = (item.value as { toJSON?: () => unknown })?.toJSON?.() ?? null;
        const want = rule(v);
        if (want) {
          errors.push(
            `${at(item.value ?? item.key)}: '${full}' must be ${want} (got ${JSON.stringify(v)})`,
          );
        }
      } else {
        walk(item.value, rule, full);
      }
    }
    for (const k of Object.keys(schema)) {
      if (!seen.has(k) && !(path === "" && k in DEFAULTS)) {
        errors.push(`${at(node)}: missing key '${path ? `${path}.` : ""}${k}'`);
      }
    }
  };
  walk(doc.contents, SCHEMA, "");
  if (errors.length) throw new InputError(errors.join("\n"));
  return { ...DEFAULTS, ...doc.toJS() } as Experiment;
}
