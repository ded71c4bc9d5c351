/**
 * Loads an experiment: YAML (npm:yaml, with line:col), `extends:`, `--set` overrides, the zod
 * schema (lib/config/schema.ts) and a content hash.
 *
 * - `extends: base.yaml` or `extends: [a.yaml, b.yaml]`: files relative to the including file,
 *   merged in order (mappings merge key by key, lists and scalars replace), then the file itself
 *   on top. Chains may nest; a cycle or a missing file is an error at the `extends` entry.
 * - `--set a.b=c` overrides are applied after the files, in order (lib/config/overrides.ts).
 * - `model.init_from`, a path, is resolved like `extends` against the file that set it (a
 *   `--set` value against the working directory) into `initFrom`; the config keeps it as written.
 * - Values are plain data: a string containing `${` is rejected (no interpolation).
 * - Files are read bounded (MAX_CONFIG_BYTES, regular files only) and must be UTF-8 (an invalid
 *   byte is reported with its offset); loading is linear in the number of keys (positions in a
 *   tree, duplicate keys found with a Set) and reads each extends target once per load.
 * - Every problem is an InputError naming the node that set the offending value, in whichever
 *   file set it: `file:line:col: ...` (or `--set a.b=c: ...`), with the key path and the allowed
 *   keys or values. All problems are listed, one per line, in file order.
 * - The hash is sha256 of the resolved config as canonical JSON (keys sorted at every level),
 *   less the keys of NON_IDENTITY_KEYS (how a run is executed, not what it computes) and the
 *   ABSENT_MEANS keys written with the value their absence means;
 *   `hash` is its first 8 hex digits, the run folder's name (design.md 5).
 */
import { AUGMENT_DRAW_MODES } from "../data/augment.ts";
import { createHash } from "node:crypto";
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  stringifyYaml,
  type z,
} from "../deps.ts";
import { BoundedReadError, readTextBounded, readTextBoundedSync } from "../io/bounded.ts";
import { didYouMean, InputError } from "./errors.ts";
import {
  choicesOf,
  expectsOf,
  type ExperimentConfig,
  keysOf,
  schemaAt,
  schemaFor,
} from "./schema.ts";
import { type ModelDeclarations, MODELS } from "../models/registry.ts";
import { show } from "./leaf.ts";
import {
  deepMerge,
  dollarError,
  isMapping,
  type KeyPath,
  type MergeHooks,
  nest,
  parseSet,
  setOwn,
} from "./overrides.ts";

export { applySets, parseSet } from "./overrides.ts";
export { show } from "./leaf.ts";
export type {
  ModelCheck,
  ModelDeclaration,
  ModelDeclarations,
  ModelOption,
  ModelOptions,
  ValueSchema,
} from "../models/registry.ts";
export type { SetOverride } from "./overrides.ts";
export type {
  DataConfig,
  EvalConfig,
  ExperimentConfig,
  LViTModelConfig,
  LViTName,
  ModelConfig,
  SemiConfig,
  TextConfig,
  TrainConfig,
  UNetModelConfig,
  UNetSmallModelConfig,
} from "./schema.ts";

/** A resolved experiment. */
export interface LoadedExperiment {
  /** The validated configuration, defaults filled. */
  config: ExperimentConfig;
  /** First 8 hex digits of `fullHash`: the run folder's name. */
  hash: string;
  /** sha256 (hex) of the canonical JSON of `config`. */
  fullHash: string;
  /** The file, then every file of its extends chain in the order they were read (each once). */
  files: string[];
  /** The resolved configuration as YAML, for the run folder's config.yaml (it loads as is). */
  yaml: string;
  /**
   * `model.init_from` as a path to open: relative to the folder of the file that set it, as
   * given when a `--set` argument did (the working directory's); null when unset. The config
   * (and its hash) keeps the value as written. Meaningless for a run folder's config.yaml,
   * whose relative paths were written for another folder.
   */
  initFrom: string | null;
}

/** Where a value came from: a YAML node, or a `--set` argument. */
type Origin = { file: string; line: number; col: number } | { set: string };

const fmtOrigin = (o: Origin) => "set" in o ? `--set ${o.set}` : `${o.file}:${o.line}:${o.col}`;

/** One key path's positions and those of the paths below it. */
interface OriginNode {
  key?: Origin;
  value?: Origin;
  kids?: Map<string, OriginNode>;
}

/**
 * The positions of keys and values in a configuration tree, by key path: a tree of the paths,
 * so that dropping or copying a subtree costs its own size, not the size of the whole file (a
 * flat list of paths made loading quadratic in the number of keys).
 */
class Origins {
  #root: OriginNode = {};

  /** The node of `p`; created (with its parents) when `create`, else undefined when absent. */
  #node(p: KeyPath, create: true): OriginNode;
  #node(p: KeyPath, create: false): OriginNode | undefined;
  #node(p: KeyPath, create: boolean): OriginNode | undefined {
    let n = this.#root;
    for (const seg of p) {
      const k = String(seg);
      let next = n.kids?.get(k);
      if (!next) {
        if (!create) return undefined;
        next = {};
        (n.kids ??= new Map()).set(k, next);
      }
      n = next;
    }
    return n;
  }
  /** Where the key of `p` was written. */
  key(p: KeyPath): Origin | undefined {
    return this.#node(p, false)?.key;
  }
  /** Where the value of `p` was written. */
  value(p: KeyPath): Origin | undefined {
    return this.#node(p, false)?.value;
  }
  setKey(p: KeyPath, o: Origin) {
    this.#node(p, true).key = o;
  }
  setValue(p: KeyPath, o: Origin) {
    this.#node(p, true).value = o;
  }
  /** Drops every position at or below `p`. */
  dropUnder(p: KeyPath) {
    if (p.length === 0) this.#root = {};
    else this.#node(p.slice(0, -1), false)?.kids?.delete(String(p[p.length - 1]));
  }
  /** Replaces the positions at or below `p` with a copy of `src`'s. */
  copyUnder(p: KeyPath, src: Origins) {
    const s = src.#node(p, false);
    if (!s) return this.dropUnder(p);
    const copy = (n: OriginNode): OriginNode => ({
      key: n.key,
      value: n.value,
      kids: n.kids && new Map([...n.kids].map(([k, v]) => [k, copy(v)])),
    });
    if (p.length === 0) this.#root = copy(s);
    else {
      const parent = this.#node(p.slice(0, -1), true);
      (parent.kids ??= new Map()).set(String(p[p.length - 1]), copy(s));
    }
  }
  /** Copies `src`'s positions of `p` itself. */
  copyAt(p: KeyPath, src: Origins) {
    const s = src.#node(p, false);
    if (s?.key) this.setKey(p, s.key);
    if (s?.value) this.setValue(p, s.value);
  }
  /** Marks `p` and everything in `value` below it as coming from `o`. */
  label(p: KeyPath, value: unknown, o: Origin) {
    this.setKey(p, o);
    this.setValue(p, o);
    if (Array.isArray(value)) value.forEach((v, i) => this.label([...p, i], v, o));
    else if (isMapping(value)) {
      for (const [k, v] of Object.entries(value)) this.label([...p, k], v, o);
    }
  }
}

/** One parsed file: its values (without `extends`), their positions and its extends entries. */
interface ParsedFile {
  value: Record<string, unknown>;
  origins: Origins;
  extends: { target: string; at: Origin }[];
}

const first = (msg: string) => msg.split("\n")[0].trim();

/**
 * The largest experiment (or extends) file read: experiment files are a few KiB; this leaves
 * room for generated ones (200,000 keys are about 3 MiB) while bounding memory.
 */
export const MAX_CONFIG_BYTES = 16 * 2 ** 20;
/** The deepest nesting of mappings and lists accepted (an experiment needs 4 levels). */
export const MAX_DEPTH = 64;
/** Problems listed in one message at most; the rest are counted. */
export const MAX_PROBLEMS = 50;

/** Reads an experiment or extends file: bounded in bytes, strictly UTF-8 (lib/io/bounded.ts). */
export function readConfigFileSync(path: string): string {
  return readTextBoundedSync(path, MAX_CONFIG_BYTES, "experiment files");
}

/** Parses one YAML file into plain data with the position of every key and value. */
function parseFile(file: string, text: string): ParsedFile {
  const lc = new LineCounter();
  // Duplicate keys are found by the walk below with a Set: the library's own check
  // (uniqueKeys) compares every key with every other, quadratic in the keys of a mapping.
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: false });
  const pos = (offset: number): Origin => ({ file, ...lc.linePos(offset) });
  const at = (node: unknown): Origin | undefined => {
    const r = (node as { range?: number[] } | null | undefined)?.range;
    return r ? pos(r[0]) : undefined;
  };
  for (const e of [...doc.errors, ...doc.warnings]) {
    throw new InputError(`${fmtOrigin(pos(e.pos[0]))}: invalid YAML: ${first(e.message)}`);
  }
  try {
    doc.toJS({ maxAliasCount: 100 }); // bounds alias expansion before the walk below
  } catch (e) {
    throw new InputError(`${file}: invalid YAML: ${first((e as Error).message)}`);
  }
  const origins = new Origins();
  const fail = (node: unknown, msg: string): never => {
    const o = at(node);
    throw new InputError(`${o ? fmtOrigin(o) : file}: ${msg}`);
  };
  const walk = (node: unknown, p: KeyPath): unknown => {
    if (node === null || node === undefined) return null;
    if (p.length > MAX_DEPTH) {
      fail(node, `nesting deeper than ${MAX_DEPTH} levels (at '${fmtPath(p.slice(0, 3))}...')`);
    }
    if (isAlias(node)) return walk(node.resolve(doc), p);
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === "string" && v.includes("${")) {
        throw dollarError(fmtOrigin(at(node) ?? { file, line: 1, col: 1 }), fmtPath(p));
      }
      if (v === null || ["string", "number", "boolean"].includes(typeof v)) return v;
      return fail(node, `'${fmtPath(p)}' is not plain data (a string, number, boolean or null)`);
    }
    if (isMap(node)) {
      const o: Record<string, unknown> = {};
      const seen = new Set<string>();
      for (const pair of node.items) {
        const k = pair.key;
        const key = isScalar(k) ? k.value : undefined;
        if (!["string", "number", "boolean"].includes(typeof key)) {
          fail(k ?? node, `keys must be plain names (in '${fmtPath(p) || "the file"}')`);
        }
        // The library's wording, which uniqueKeys gave before.
        if (seen.has(String(key))) fail(k, "invalid YAML: Map keys must be unique");
        seen.add(String(key));
        const q = [...p, String(key)];
        origins.setKey(q, at(k)!);
        origins.setValue(q, at(pair.value) ?? at(k)!);
        setOwn(o, String(key), walk(pair.value, q));
      }
      return o;
    }
    if (isSeq(node)) {
      return node.items.map((it, i) => {
        const q = [...p, i];
        const o = at(it);
        if (o) origins.setValue(q, o);
        return walk(it, q);
      });
    }
    return fail(node, `'${fmtPath(p)}' is not plain data`);
  };
  const root = doc.contents;
  if (root !== null && !isMap(root)) fail(root, "an experiment file must be a mapping of keys");
  const value = walk(root, []) as Record<string, unknown> | null ?? {};

  const ext: ParsedFile["extends"] = [];
  if (Object.hasOwn(value, "extends")) {
    const v = value.extends;
    const list = typeof v === "string" ? [v] : Array.isArray(v) ? v : null;
    const whereV = origins.value(["extends"])!;
    if (!list || list.length === 0 || list.some((x) => typeof x !== "string" || x === "")) {
      throw new InputError(
        `${fmtOrigin(whereV)}: 'extends' must be a file name or a list of file names ` +
          `(got ${show(v)})`,
      );
    }
    list.forEach((target, i) => {
      const o = typeof v === "string" ? whereV : origins.value(["extends", i]);
      ext.push({ target: target as string, at: o ?? whereV });
    });
    delete value.extends;
    origins.dropUnder(["extends"]);
  }
  return { value, origins, extends: ext };
}

/** `a.b[2].c` */
export function fmtPath(p: readonly (string | number)[]): string {
  return p.map((s, i) => typeof s === "number" ? `[${s}]` : i ? `.${s}` : s).join("");
}

/** Collapses `.`, `..` and repeated separators; keeps the path relative when it was. */
export function normalizePath(p: string): string {
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
      continue;
    }
    out.push(seg);
  }
  return (abs ? "/" : "") + out.join("/") || (abs ? "/" : ".");
}

/** `target` relative to the folder of the file `from` (absolute targets stay as they are). */
export function relativeTo(from: string, target: string): string {
  if (target.startsWith("/")) return normalizePath(target);
  const i = from.lastIndexOf("/");
  return normalizePath(i < 0 ? target : `${from.slice(0, i + 1)}${target}`);
}

/** Whether a read failed because the file does not exist (Deno's error or a Node-style one). */
export function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || (e instanceof BoundedReadError && e.notFound) ||
    (e as { code?: string } | null)?.code === "ENOENT";
}

/** A resolved extends target, kept so that a file named again is not read and merged again. */
type Chain = { value: Record<string, unknown>; origins: Origins };

/**
 * Reads `file` and its extends chain into one merged tree with positions. Each target is
 * resolved once per load (`done`): without that, a chain whose files each extend the next one
 * twice would be read 2^depth times. Merges only read what they merge from, so a resolved
 * target can be merged again; one that failed stops the whole load.
 */
function resolveChain(
  file: string,
  text: string,
  readFile: (p: string) => string,
  stack: string[],
  files: string[],
  done: Map<string, Chain> = new Map(),
): Chain {
  const parsed = parseFile(file, text);
  if (!files.includes(file)) files.push(file);
  const value: Record<string, unknown> = {};
  const origins = new Origins();
  const mergeFrom = (over: Record<string, unknown>, src: Origins) => {
    const hooks: MergeHooks = {
      replaced: (p) => {
        origins.dropUnder(p);
        origins.copyUnder(p, src);
      },
      merged: (p) => origins.copyAt(p, src),
    };
    deepMerge(value, over, hooks);
  };
  for (const e of parsed.extends) {
    const target = relativeTo(file, e.target);
    if (stack.includes(target)) {
      const cycle = [...stack.slice(stack.indexOf(target)), target];
      throw new InputError(`${fmtOrigin(e.at)}: cyclic extends: ${cycle.join(" -> ")}`);
    }
    let sub = done.get(target);
    if (!sub) {
      let t: string;
      try {
        t = readFile(target);
      } catch (err) {
        throw new InputError(
          `${fmtOrigin(e.at)}: ` +
            (isNotFound(err)
              ? `extends target '${e.target}' not found (looked for ${target})`
              : err instanceof BoundedReadError
              ? `extends target '${e.target}': ${err.message}`
              : `cannot read extends target '${e.target}' (${target}): ${(err as Error).message}`),
        );
      }
      sub = resolveChain(target, t, readFile, [...stack, target], files, done);
      done.set(target, sub);
    }
    mergeFrom(sub.value, sub.origins);
  }
  mergeFrom(parsed.value, parsed.origins);
  return { value, origins };
}

/**
 * Keys that say how a run is executed, not what it computes: they are left out of the config
 * hash, so the same run continued with other values keeps its folder and resumes from its
 * checkpoints (`train.time_limit`: each chunk of a long run may get its own limit).
 */
export const NON_IDENTITY_KEYS: readonly (readonly string[])[] = [["train", "time_limit"]];

/**
 * Optional keys added after runs were published, with the value their absence means: written
 * out with that value they are left out of the hash too, so the experiment keeps its folder.
 */
export const ABSENT_MEANS: readonly { path: readonly string[]; value: unknown }[] = [
  { path: ["data", "augment_draws"], value: AUGMENT_DRAW_MODES[0] },
];

/**
 * The part of a resolved config that is the run's identity: a copy less NON_IDENTITY_KEYS and
 * less the ABSENT_MEANS keys that hold the value their absence means.
 */
export function identityOf(config: ExperimentConfig): Record<string, unknown> {
  const out = structuredClone(config) as unknown as Record<string, unknown>;
  const drop = (path: readonly string[], unless?: { value: unknown }) => {
    let o: unknown = out;
    for (const k of path.slice(0, -1)) o = isMapping(o) ? o[k] : undefined;
    const last = path[path.length - 1];
    if (isMapping(o) && (unless === undefined || o[last] === unless.value)) delete o[last];
  };
  for (const path of NON_IDENTITY_KEYS) drop(path);
  for (const a of ABSENT_MEANS) drop(a.path, a);
  return out;
}

/** Canonical JSON: keys sorted at every level, no whitespace. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isMapping(v)) {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

/** One problem, ready to sort and print. */
interface Problem {
  at?: Origin;
  text: string;
}

/** Turns the issues of `schema` into positioned messages. */
function describeIssues(
  issues: readonly Record<string, unknown>[],
  raw: Record<string, unknown>,
  origins: Origins,
  schema: z.ZodType,
): Problem[] {
  const get = (p: KeyPath): unknown => {
    let v: unknown = raw;
    for (const s of p) {
      if (v === null || typeof v !== "object" || !Object.hasOwn(v, s)) return undefined;
      v = (v as Record<string, unknown>)[s];
    }
    return v;
  };
  /** The node at `p` (or one of `alts`), else the nearest enclosing key that was set. */
  const find = (p: KeyPath, kind: "key" | "value", alts: KeyPath[] = []): Origin | undefined => {
    for (const q of [p, ...alts]) {
      const o = kind === "key" ? origins.key(q) ?? origins.value(q) : origins.value(q);
      if (o) return o;
    }
    for (let n = p.length - 1; n > 0; n--) {
      const o = origins.key(p.slice(0, n));
      if (o) return o;
    }
    return undefined;
  };
  const out: Problem[] = [];
  for (const issue of issues) {
    const p = issue.path as KeyPath;
    const v = get(p);
    const full = fmtPath(p);
    if (issue.code === "unrecognized_keys") {
      const allowed = keysOf(schemaAt(p, raw, schema)) ?? [];
      const forModel = full === "model" ? ` for model ${String(get(["model", "name"]))}` : "";
      for (const k of issue.keys as string[]) {
        out.push({
          at: find([...p, k], "key"),
          text: `unknown key '${fmtPath([...p, k])}'${forModel}${didYouMean(k, allowed)}; ` +
            `allowed: ${allowed.join(", ")}`,
        });
      }
      continue;
    }
    if (issue.code === "custom") {
      const alts = ((issue.params as { alt?: KeyPath[] } | undefined)?.alt) ?? [];
      out.push({ at: find(p, "value", alts), text: String(issue.message) });
      continue;
    }
    let choices: (string | number)[] | undefined;
    let want: string;
    if (issue.code === "invalid_union" && Array.isArray(issue.options)) {
      choices = issue.options as string[];
      want = `one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`;
    } else {
      const s = schemaAt(p, raw, schema);
      choices = s && choicesOf(s);
      want = s ? expectsOf(s) : String(issue.message);
    }
    const hint = typeof v === "string" && choices
      ? didYouMean(v, choices.filter((c): c is string => typeof c === "string"))
      : "";
    out.push(
      v === undefined
        ? { at: find(p, "key"), text: `missing key '${full}' (${want})` }
        : { at: find(p, "value"), text: `'${full}' must be ${want} (got ${show(v)})${hint}` },
    );
  }
  return out;
}

/**
 * Resolves an experiment from its text: `file` names it in messages and anchors relative
 * `extends` paths; `readFile` reads the extends targets (default: {@link readConfigFileSync},
 * bounded and strictly UTF-8); `models` are the models it may name (default: the registry's;
 * its schema is built from their option declarations). Throws an InputError for any problem
 * (see the module doc).
 */
export function resolveExperimentText(
  file: string,
  text: string,
  sets: readonly string[] = [],
  readFile: (p: string) => string = readConfigFileSync,
  models: ModelDeclarations = MODELS,
): LoadedExperiment {
  const schema = schemaFor(models);
  const files: string[] = [];
  const { value, origins } = resolveChain(file, text, readFile, [normalizePath(file)], files);
  for (const spec of sets) {
    const s = parseSet(spec);
    const label: Origin = { set: spec };
    deepMerge(value, nest(s.path, s.value), {
      replaced: (p, v) => {
        origins.dropUnder(p);
        origins.label(p, v, label);
      },
    });
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const problems = describeIssues(
      r.error.issues as unknown as Record<string, unknown>[],
      value,
      origins,
      schema,
    );
    const rank = (o?: Origin): [number, number, number] =>
      !o
        ? [Infinity, 0, 0]
        : "set" in o
        ? [files.length + sets.indexOf(o.set), 0, 0]
        : [files.indexOf(o.file), o.line, o.col];
    problems.sort((a, b) => {
      const x = rank(a.at), y = rank(b.at);
      return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
    });
    const lines = [...new Set(problems.map((q) => `${q.at ? fmtOrigin(q.at) : file}: ${q.text}`))];
    if (lines.length > MAX_PROBLEMS) {
      const more = lines.length - MAX_PROBLEMS;
      lines.splice(MAX_PROBLEMS, more, `... and ${more} more problems`);
    }
    throw new InputError(lines.join("\n"));
  }
  const config = r.data;
  const fullHash = createHash("sha256").update(canonicalJson(identityOf(config))).digest("hex");
  const init = config.model.init_from;
  const initAt = origins.value(["model", "init_from"]);
  return {
    config,
    hash: fullHash.slice(0, 8),
    fullHash,
    files,
    yaml: stringifyYaml(config, { lineWidth: 0 }),
    initFrom: typeof init !== "string"
      ? null
      : initAt && !("set" in initAt)
      ? relativeTo(initAt.file, init)
      : init,
  };
}

/**
 * Reads, resolves and validates an experiment file, then applies `sets` (`a.b=c` strings, as
 * given to `--set`). Throws an InputError for any problem, including an unreadable file.
 */
export async function loadExperiment(
  path: string,
  sets: readonly string[] = [],
): Promise<LoadedExperiment> {
  let text: string;
  try {
    text = await readTextBounded(path, MAX_CONFIG_BYTES, "experiment files");
  } catch (e) {
    // Not there at all keeps its old wording; a limit, a non-file or bad UTF-8 say so.
    if (e instanceof BoundedReadError && !e.notFound) throw new InputError(e.message);
    const why = e instanceof BoundedReadError ? e.problem : (e as Error).message;
    throw new InputError(`${path}: cannot read the experiment file (${why})`);
  }
  return resolveExperimentText(path, text, sets);
}
