/**
 * Sweep files (`*.sweep.yaml`): parsing with line:col positions, validation (zod), expansion
 * into points, and the up-front check of every point through the experiment loader.
 *
 * ```yaml
 * name: text-plam-synth            # the sweep folder is <out>/<name>/
 * base: ../demo.yaml               # base experiment, relative to this file
 * out: runs                        # optional runs root, relative to the working directory
 * baseline: full                   # optional; default: the first variant
 * set: { train.epochs: 3 }         # optional overrides of every point
 * axes:                            # cartesian product, first axis outermost
 *   model.text: [true, false]
 *   seed: [1, 2, 3]                # the replicate axis: aggregated over
 * variants:                        # optional names of the non-seed combinations
 *   - { name: full, when: { model.text: true } }
 * include: [ { model.text: false, model.plam: false } ]  # extra combinations (x seeds)
 * exclude: [ { model.text: false, seed: 3 } ]            # drop matching product points
 * ```
 *
 * A point is the base experiment with `--set` overrides: `set` first, then the point's axis
 * values in axis order, then `variant=<variant name>`. So every point is an ordinary run with
 * its own run folder and config hash, and can be rerun alone with `deno task run`.
 *
 * Variant names are run-folder names (NAME_PATTERN of lib/config/schema.ts: letters, digits,
 * '.', '_', '-'). A combination that no `variants` entry names gets `<key>-<value>` parts joined
 * by `_` (the key's last segment unless two keys share it), e.g. `text-false_plam-true`: the
 * "k=v,k=v" form is not a valid folder name, so it only appears in the tables' settings column.
 */
import { join } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, z } from "../deps.ts";
import { didYouMean, InputError } from "../config/errors.ts";
import { BoundedReadError, readTextBounded } from "../io/bounded.ts";
import {
  canonicalJson,
  fmtPath,
  isNotFound,
  MAX_CONFIG_BYTES,
  readConfigFileSync,
  relativeTo,
  resolveExperimentText,
  show,
} from "../config/load.ts";
import { parseSet, setOwn } from "../config/overrides.ts";
import { type ExperimentConfig, NAME_PATTERN } from "../config/schema.ts";
import { type RunPaths, runPaths } from "../run/folder.ts";

/** A position in the sweep file (1-based). */
export interface Pos {
  file: string;
  line: number;
  col: number;
}

/** `file:line:col` */
export const fmtPos = (p: Pos): string => `${p.file}:${p.line}:${p.col}`;

/** One key path = value assignment of the sweep file, with where its key and value are. */
export interface Setting {
  /** Dotted key path of the experiment, e.g. `model.text`. */
  key: string;
  value: unknown;
  keyAt: Pos;
  valueAt: Pos;
  /** Where it comes from, for messages: `axis 'model.text'`, `set 'train.epochs'`, ... */
  where: string;
}

/** One axis: a key path and its values, in file order. */
export interface Axis {
  key: string;
  keyAt: Pos;
  values: { value: unknown; at: Pos }[];
}

/** A `variants` entry: the name of the combinations matching `when`. */
export interface VariantRule {
  name: string;
  nameAt: Pos;
  when: Setting[];
}

/** A parsed, validated sweep file (before expansion). */
export interface SweepSpec {
  /** The sweep file as given. */
  file: string;
  name: string;
  description: string;
  /** The base experiment's path (relative to the working directory when the file's was). */
  base: string;
  baseAt: Pos;
  /** Runs root from the file, if it sets one. */
  out?: string;
  baseline?: string;
  baselineAt?: Pos;
  set: Setting[];
  axes: Axis[];
  variants: VariantRule[];
  include: Setting[][];
  exclude: Setting[][];
}

/** One point of an expanded sweep (before the loader has resolved it). */
export interface PlannedPoint {
  /** 1-based position in expansion order. */
  index: number;
  variant: string;
  /** The seed axis value, or null when the sweep has no seed axis (the base's seed). */
  seedValue: number | null;
  /** The non-seed settings that define the variant, in axis order. */
  settings: Setting[];
  /** The seed setting, when the sweep has a seed axis. */
  seedSetting: Setting | null;
  /** The point's settings with the seed where its axis stands (includes: seed last). */
  overrides: Setting[];
}

/** A variant: the points that share one non-seed combination. */
export interface VariantInfo {
  name: string;
  /** `model.text=true, model.plam=false` */
  label: string;
  settings: { key: string; value: unknown }[];
}

/** The result of expansion: points in order, their variants and non-fatal remarks. */
export interface Expansion {
  points: PlannedPoint[];
  variants: VariantInfo[];
  baseline: string;
  warnings: string[];
}

/** A point checked by the experiment loader. */
export interface SweepPoint extends PlannedPoint {
  /** The resolved seed (config.seed). */
  seed: number;
  /** Every `--set` argument of the point, in order (variant last). */
  sets: string[];
  /** 8-hex config hash. */
  hash: string;
  /** The experiment name (config.name). */
  experiment: string;
  /** The run folder `<out>/<experiment>/<variant>/<hash>` (= `paths.dir`). */
  dir: string;
  /** The run folder and the files in it (lib/run/folder.ts). */
  paths: RunPaths;
  /** The resolved configuration. */
  config: ExperimentConfig;
}

/** A sweep ready to run: spec, points with hashes and folders, variants and output folders. */
export interface ResolvedSweep extends Expansion {
  spec: SweepSpec;
  points: SweepPoint[];
  /** Runs root. */
  out: string;
  /** `<out>/<sweep name>`: tables, points.json and logs. */
  sweepDir: string;
}

/** The replicate axis: aggregated over instead of defining variants. */
export const SEED_KEY = "seed";

// ---------------------------------------------------------------------------------------------
// Parsing: YAML -> plain data plus the position of every key and value.

interface Where {
  key?: Pos;
  value: Pos;
}

const pathId = (p: readonly (string | number)[]) => p.map(String).join("\u0000");

function readYaml(file: string, text: string): { value: unknown; where: Map<string, Where> } {
  const lc = new LineCounter();
  // Duplicate keys are found by the walk with a Set (the library's check is quadratic).
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: false });
  const pos = (offset: number): Pos => ({ file, ...lc.linePos(offset) });
  for (const e of [...doc.errors, ...doc.warnings]) {
    throw new InputError(`${fmtPos(pos(e.pos[0]))}: invalid YAML: ${e.message.split("\n")[0]}`);
  }
  try {
    doc.toJS({ maxAliasCount: 100 }); // bounds alias expansion before the walk below
  } catch (e) {
    throw new InputError(`${file}: invalid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  const where = new Map<string, Where>();
  const at = (node: unknown, fallback: Pos): Pos => {
    const r = (node as { range?: number[] } | null | undefined)?.range;
    return r ? pos(r[0]) : fallback;
  };
  const walk = (node: unknown, p: (string | number)[], here: Pos): unknown => {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) return walk(node.resolve(doc), p, here);
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || ["string", "number", "boolean"].includes(typeof v)) return v;
      throw new InputError(`${fmtPos(at(node, here))}: '${fmtPath(p)}' is not plain data`);
    }
    if (isMap(node)) {
      const o: Record<string, unknown> = {};
      const seen = new Set<string>();
      for (const pair of node.items) {
        const k = isScalar(pair.key) ? pair.key.value : undefined;
        const kAt = at(pair.key, at(node, here));
        if (!["string", "number", "boolean"].includes(typeof k)) {
          throw new InputError(`${fmtPos(kAt)}: keys must be plain names`);
        }
        if (seen.has(String(k))) {
          throw new InputError(`${fmtPos(kAt)}: invalid YAML: Map keys must be unique`);
        }
        seen.add(String(k));
        const q = [...p, String(k)];
        const vAt = at(pair.value, kAt);
        where.set(pathId(q), { key: kAt, value: vAt });
        // setOwn: a key named __proto__ stays an ordinary key.
        setOwn(o, String(k), walk(pair.value, q, vAt));
      }
      return o;
    }
    if (isSeq(node)) {
      return node.items.map((it, i) => {
        const vAt = at(it, at(node, here));
        where.set(pathId([...p, i]), { value: vAt });
        return walk(it, [...p, i], vAt);
      });
    }
    throw new InputError(`${fmtPos(at(node, here))}: '${fmtPath(p)}' is not plain data`);
  };
  const start: Pos = { file, line: 1, col: 1 };
  where.set(pathId([]), { value: start });
  return { value: walk(doc.contents, [], start), where };
}

// ---------------------------------------------------------------------------------------------
// The schema.

const KEY_PATH = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const keyPath = z.string().regex(KEY_PATH, {
  error: "must be a key path of the experiment (names of letters, digits, '_' and '-' joined " +
    "by '.', e.g. model.text)",
});
const nameSchema = (what: string) =>
  z.string({ error: `must be ${what}` }).regex(NAME_PATTERN, {
    error: `must be ${what} (letters, digits, '.', '_' and '-'; it names a folder)`,
  });
const assignment = z.record(keyPath, z.unknown(), {
  error: "must be a mapping of key path to value, e.g. { model.text: false }",
});

/** The sweep file's schema (positions are added by the caller). */
export const SweepSchema = z.strictObject({
  name: nameSchema("a sweep name"),
  description: z.string({ error: "must be a string" }).optional(),
  base: z.string({ error: "must be the base experiment's file name" }).min(1, {
    error: "must be the base experiment's file name",
  }),
  out: z.string({ error: "must be a folder name" }).min(1, { error: "must be a folder name" })
    .optional(),
  baseline: nameSchema("a variant name").optional(),
  set: assignment.optional(),
  axes: z.record(
    keyPath,
    z.array(z.unknown(), { error: "must be a list of values, e.g. [true, false]" }).min(1, {
      error: "must list at least one value",
    }),
    { error: "must be a mapping of key path to a list of values" },
  ),
  variants: z.array(
    z.strictObject({
      name: nameSchema("a variant name"),
      when: assignment.refine((w) => Object.keys(w).length > 0, {
        error: "must name at least one axis value",
      }),
    }, { error: "must be a mapping { name: ..., when: { key: value } }" }),
    { error: "must be a list of { name, when } entries" },
  ).optional(),
  include: z.array(assignment, { error: "must be a list of mappings" }).optional(),
  exclude: z.array(
    assignment.refine((w) => Object.keys(w).length > 0, {
      error: "must name at least one axis value",
    }),
    { error: "must be a list of mappings" },
  ).optional(),
});

const TOP_KEYS = Object.keys(SweepSchema.shape);

/** Parses and validates a sweep file's text; `file` names it in messages and anchors `base`. */
export function parseSweepText(file: string, text: string): SweepSpec {
  const { value, where } = readYaml(file, text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InputError(`${file}:1:1: a sweep file must be a mapping of keys`);
  }
  const whereOf = (p: (string | number)[], kind: "key" | "value"): Pos => {
    for (let n = p.length; n >= 0; n--) {
      const w = where.get(pathId(p.slice(0, n)));
      if (w) return (n === p.length && kind === "key" ? w.key : undefined) ?? w.value;
    }
    return { file, line: 1, col: 1 };
  };
  const r = SweepSchema.safeParse(value);
  if (!r.success) {
    const lines: { at: Pos; text: string }[] = [];
    for (const issue of r.error.issues) {
      const p = issue.path as (string | number)[];
      if (issue.code === "unrecognized_keys") {
        const allowed = p.length === 0 ? TOP_KEYS : p[0] === "variants" ? ["name", "when"] : [];
        for (const k of issue.keys) {
          lines.push({
            at: whereOf([...p, k], "key"),
            text: `unknown key '${fmtPath([...p, k])}'${didYouMean(k, allowed)}; allowed: ` +
              allowed.join(", "),
          });
        }
      } else if (issue.code === "invalid_key") {
        const inner = (issue.issues?.[0]?.message as string | undefined) ?? issue.message;
        lines.push({ at: whereOf(p, "key"), text: `'${p[p.length - 1]}' ${inner}` });
      } else {
        let v: unknown = value;
        for (const s of p) v = (v as Record<string | number, unknown> | undefined)?.[s];
        const missing = v === undefined;
        lines.push({
          at: whereOf(p, missing ? "key" : "value"),
          text: missing
            ? `missing key '${fmtPath(p)}' (it ${issue.message})`
            : `'${fmtPath(p)}' ${issue.message} (got ${show(v)})`,
        });
      }
    }
    lines.sort((a, b) => a.at.line - b.at.line || a.at.col - b.at.col);
    throw new InputError([...new Set(lines.map((l) => `${fmtPos(l.at)}: ${l.text}`))].join("\n"));
  }
  const d = r.data;
  const settings = (p: (string | number)[], o: Record<string, unknown>, where: string) =>
    Object.entries(o).map(([key, v]): Setting => ({
      key,
      value: v,
      keyAt: whereOf([...p, key], "key"),
      valueAt: whereOf([...p, key], "value"),
      where: `${where} '${key}'`,
    }));
  const spec: SweepSpec = {
    file,
    name: d.name,
    description: d.description ?? "",
    base: relativeTo(file, d.base),
    baseAt: whereOf(["base"], "value"),
    out: d.out,
    baseline: d.baseline,
    baselineAt: d.baseline === undefined ? undefined : whereOf(["baseline"], "value"),
    set: settings(["set"], d.set ?? {}, "set"),
    axes: Object.entries(d.axes).map(([key, values]) => ({
      key,
      keyAt: whereOf(["axes", key], "key"),
      values: values.map((v, i) => ({ value: v, at: whereOf(["axes", key, i], "value") })),
    })),
    variants: (d.variants ?? []).map((v, i) => ({
      name: v.name,
      nameAt: whereOf(["variants", i, "name"], "value"),
      when: settings(["variants", i, "when"], v.when, `variants[${i}].when`),
    })),
    include: (d.include ?? []).map((o, i) => settings(["include", i], o, `include[${i}]`)),
    exclude: (d.exclude ?? []).map((o, i) => settings(["exclude", i], o, `exclude[${i}]`)),
  };
  checkKeys(spec);
  return spec;
}

/** Cross-key rules the schema cannot see: reserved keys, overlaps, duplicates. */
function checkKeys(s: SweepSpec): void {
  const problems: { at: Pos; text: string }[] = [];
  const axisKeys = s.axes.map((a) => a.key);
  for (const st of [...s.set, ...s.axes.map(axisSetting), ...s.include.flat()]) {
    if (st.key === "variant" || st.key.startsWith("variant.")) {
      problems.push({
        at: st.keyAt,
        text: `${st.where}: the sweep sets 'variant' itself (name combinations under variants:)`,
      });
    }
    if (st.key === "extends" || st.key.startsWith("extends.")) {
      problems.push({ at: st.keyAt, text: `${st.where}: 'extends' belongs in the base file` });
    }
  }
  s.axes.forEach((a, i) => {
    for (const b of s.axes.slice(0, i)) {
      if (a.key.startsWith(`${b.key}.`) || b.key.startsWith(`${a.key}.`)) {
        problems.push({ at: a.keyAt, text: `axis '${a.key}' overlaps axis '${b.key}'` });
      }
    }
    const seen = new Map<string, number>();
    a.values.forEach((v, j) => {
      const c = canonicalJson(v.value);
      if (seen.has(c)) {
        problems.push({
          at: v.at,
          text: `axis '${a.key}' lists ${show(v.value)} twice (values ${seen.get(c)! + 1} and ` +
            `${j + 1}): both would be the same run`,
        });
      } else seen.set(c, j);
    });
  });
  const seedAxis = axisKeys.includes(SEED_KEY);
  for (const inc of s.include) {
    for (const st of inc) {
      if (st.key === SEED_KEY) {
        problems.push({
          at: st.keyAt,
          text: `${st.where}: include entries name variants; seeds come from the seed axis` +
            (seedAxis ? "" : " (add one: axes: { seed: [1, 2, 3] })"),
        });
      }
    }
  }
  const nonSeedKeys = new Set([
    ...axisKeys.filter((k) => k !== SEED_KEY),
    ...s.include.flat().map((st) => st.key),
  ]);
  for (const ex of s.exclude) {
    for (const st of ex) {
      if (!axisKeys.includes(st.key)) {
        problems.push({
          at: st.keyAt,
          text: `${st.where} is not an axis${didYouMean(st.key, axisKeys)}; ` +
            `axes: ${axisKeys.join(", ")}`,
        });
      }
    }
  }
  const names = new Map<string, Pos>();
  for (const v of s.variants) {
    const prev = names.get(v.name);
    if (prev) {
      problems.push({ at: v.nameAt, text: `variant '${v.name}' is named twice (${fmtPos(prev)})` });
    } else names.set(v.name, v.nameAt);
    for (const st of v.when) {
      if (!nonSeedKeys.has(st.key)) {
        const keys = [...nonSeedKeys];
        problems.push({
          at: st.keyAt,
          text: `${st.where} is not a non-seed axis or include key` +
            `${didYouMean(st.key, keys)}; keys: ${keys.join(", ") || "(none)"}`,
        });
      }
    }
  }
  if (problems.length) {
    problems.sort((a, b) => a.at.line - b.at.line || a.at.col - b.at.col);
    throw new InputError(problems.map((p) => `${fmtPos(p.at)}: ${p.text}`).join("\n"));
  }
}

const axisSetting = (a: Axis): Setting => ({
  key: a.key,
  value: a.values[0].value,
  keyAt: a.keyAt,
  valueAt: a.values[0].at,
  where: `axis '${a.key}'`,
});

// ---------------------------------------------------------------------------------------------
// Expansion.

const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);

/** A value as the settings column shows it: strings bare, everything else as JSON. */
export function showValue(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** `model.text=true, model.plam=false` (or `(base)` with no settings). */
export function settingsLabel(settings: readonly { key: string; value: unknown }[]): string {
  return settings.length
    ? settings.map((s) => `${s.key}=${showValue(s.value)}`).join(", ")
    : "(base)";
}

function nameValue(v: unknown): string {
  if (Array.isArray(v)) return v.map(nameValue).join("x");
  if (v !== null && typeof v === "object") {
    return Object.entries(v).map(([k, x]) => `${k}-${nameValue(x)}`).join("-");
  }
  return String(v);
}

/**
 * The default name of a combination: `<key>-<value>` parts joined by `_`, where key is the key
 * path's last segment unless another of `allKeys` shares it (then the whole path). Characters
 * a folder name cannot hold become '-'; no settings gives `default`.
 */
export function defaultVariantName(
  settings: readonly { key: string; value: unknown }[],
  allKeys: readonly string[] = settings.map((s) => s.key),
): string {
  const last = (k: string) => k.slice(k.lastIndexOf(".") + 1);
  const counts = new Map<string, number>();
  for (const k of new Set(allKeys)) counts.set(last(k), (counts.get(last(k)) ?? 0) + 1);
  const name = settings
    .map((s) => `${counts.get(last(s.key))! > 1 ? s.key : last(s.key)}-${nameValue(s.value)}`)
    .join("_")
    .replace(/[^A-Za-z0-9._-]+/g, "-");
  return name === "" || !NAME_PATTERN.test(name) ? `default${name}` : name;
}

/**
 * Expands a sweep into its points: the cartesian product of the axes (first axis outermost,
 * values in file order) minus the `exclude` matches, then each `include` combination crossed
 * with the seed axis. Each point's variant is the first `variants` entry whose `when` it
 * matches, else its default name. Throws an InputError (with sweep-file positions) when two
 * different combinations would share a variant name, the baseline names no variant or the
 * excludes leave no point at all.
 */
export function expandSweep(s: SweepSpec): Expansion {
  const warnings: string[] = [];
  const seedAxis = s.axes.find((a) => a.key === SEED_KEY);
  const allSettings = (a: Axis) =>
    a.values.map((v): Setting => ({
      key: a.key,
      value: v.value,
      keyAt: a.keyAt,
      valueAt: v.at,
      where: `axis '${a.key}'`,
    }));
  // The product, as lists of settings in axis order (seed included where it stands).
  let combos: Setting[][] = [[]];
  for (const a of s.axes) combos = combos.flatMap((c) => allSettings(a).map((st) => [...c, st]));
  const matches = (point: Setting[], rule: Setting[]) =>
    rule.every((r) => point.some((p) => p.key === r.key && same(p.value, r.value)));
  const used = new Set<number>();
  combos = combos.filter((c) => {
    const i = s.exclude.findIndex((ex) => matches(c, ex));
    if (i >= 0) used.add(i);
    return i < 0;
  });
  s.exclude.forEach((ex, i) => {
    if (!used.has(i)) warnings.push(`${fmtPos(ex[0].keyAt)}: exclude[${i}] matches no point`);
  });
  const seeds = seedAxis ? allSettings(seedAxis) : [null];
  for (const inc of s.include) {
    for (const sd of seeds) combos.push(sd ? [...inc, sd] : [...inc]);
  }

  const allKeys = [
    ...s.axes.filter((a) => a.key !== SEED_KEY).map((a) => a.key),
    ...s.include.flat().map((st) => st.key),
  ];
  const ruleUsed = new Set<number>();
  const variants = new Map<string, VariantInfo & { at: Pos; combo: string }>();
  const seen = new Map<string, number>();
  const problems: string[] = [];
  const points: PlannedPoint[] = [];
  for (const c of combos) {
    const settings = c.filter((st) => st.key !== SEED_KEY);
    const seedSetting = c.find((st) => st.key === SEED_KEY) ?? null;
    const r = s.variants.findIndex((v) => matches(settings, v.when));
    if (r >= 0) ruleUsed.add(r);
    const name = r >= 0 ? s.variants[r].name : defaultVariantName(settings, allKeys);
    const at = r >= 0 ? s.variants[r].nameAt : (settings[0]?.keyAt ?? s.baseAt);
    const combo = canonicalJson(settings.map((st) => [st.key, st.value]));
    const prev = variants.get(name);
    if (!prev) {
      variants.set(name, {
        name,
        label: settingsLabel(settings),
        settings: settings.map((st) => ({ key: st.key, value: st.value })),
        at,
        combo,
      });
    } else if (prev.combo !== combo) {
      problems.push(
        `${fmtPos(at)}: variant '${name}' would name two different combinations ` +
          `(${prev.label}; ${settingsLabel(settings)}): ` +
          (r >= 0 ? "make its `when` more specific" : "name them under variants:"),
      );
      continue;
    }
    const seedValue = seedSetting ? seedSetting.value as number : null;
    const id = `${name}\u0000${canonicalJson(seedValue)}`;
    if (seen.has(id)) {
      // The same combination twice (an include repeating a product point): one run.
      warnings.push(
        `${fmtPos(settings[0]?.keyAt ?? s.baseAt)}: variant '${name}'` +
          `${seedSetting ? ` seed ${showValue(seedValue)}` : ""} is listed twice; running it once`,
      );
      continue;
    }
    seen.set(id, points.length);
    points.push({
      index: points.length + 1,
      variant: name,
      seedValue,
      settings,
      seedSetting,
      overrides: c,
    });
  }
  s.variants.forEach((v, i) => {
    if (!ruleUsed.has(i)) {
      warnings.push(`${fmtPos(v.nameAt)}: variant '${v.name}' matches no point`);
    }
  });
  const names = [...variants.keys()];
  if (points.length === 0) {
    // Only the excludes can empty a sweep: the product has a point, includes add more.
    problems.push(`${s.file}: the sweep has no points (every combination is excluded)`);
  } else if (s.baseline !== undefined && !variants.has(s.baseline)) {
    problems.push(
      `${fmtPos(s.baselineAt!)}: baseline '${s.baseline}' is not a variant of this sweep` +
        `${didYouMean(s.baseline, names)}; variants: ${names.join(", ")}`,
    );
  }
  if (problems.length) throw new InputError([...new Set(problems)].join("\n"));
  return {
    points,
    variants: [...variants.values()].map(({ name, label, settings }) => ({
      name,
      label,
      settings,
    })),
    baseline: s.baseline ?? names[0],
    warnings,
  };
}

// ---------------------------------------------------------------------------------------------
// `--set` arguments and the up-front check of every point.

/**
 * The `--set key=value` argument (without `--set`) that sets `value`: bare when the run CLI
 * reads it back as the same value (`model.text=false`, `model.widths=[4,8]`), else quoted.
 */
export function setArg(key: string, value: unknown): string {
  const back = (text: string) => {
    try {
      return same(parseSet(`${key}=${text}`).value, value);
    } catch {
      return false;
    }
  };
  if (typeof value === "number" && !Number.isFinite(value)) {
    return `${key}=${Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf"}`;
  }
  const bare = typeof value === "string" ? value : JSON.stringify(value);
  if (back(bare)) return `${key}=${bare}`;
  // A double-quoted YAML scalar is a JSON string; if even that does not read back, the loader
  // reports the problem with the setting's position.
  return `${key}=${JSON.stringify(value)}`;
}

/** Quotes an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_.,:=+@%\/-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The `--set` arguments of a point: `set`, then its settings in axis order, then variant. */
export function pointSets(s: SweepSpec, p: PlannedPoint): { sets: string[]; from: Setting[] } {
  const from = [...s.set, ...p.overrides];
  return { sets: [...from.map((st) => setArg(st.key, st.value)), `variant=${p.variant}`], from };
}

/** Options of resolveSweep. */
export interface ResolveOptions {
  /** Runs root (default: the sweep file's `out`, else `runs`). */
  out?: string;
  /** Reads the base experiment and its extends chain (default: the loader's bounded reader). */
  readFile?: (path: string) => string;
}

/**
 * Expands a sweep and resolves every point through the experiment loader before anything runs.
 * A loader problem caused by a sweep setting is reported at the sweep file's position: the key
 * for an unknown key (or a bad key path), the value otherwise. Problems of the base file keep
 * its positions. All problems are listed, one per line.
 */
export function resolveSweep(s: SweepSpec, o: ResolveOptions = {}): ResolvedSweep {
  // Every point resolves the same extends chain: read each file once, not once per point.
  const read = o.readFile ?? readConfigFileSync;
  const texts = new Map<string, string>();
  const readFile = (path: string): string => {
    let t = texts.get(path);
    if (t === undefined) texts.set(path, t = read(path));
    return t;
  };
  const exp = expandSweep(s);
  let baseText: string;
  try {
    baseText = readFile(s.base);
  } catch (e) {
    throw new InputError(
      `${fmtPos(s.baseAt)}: ` +
        (isNotFound(e)
          ? `base experiment not found (looked for ${s.base})`
          : `cannot read the base experiment ${s.base}: ${(e as Error).message}`),
    );
  }
  const out = o.out ?? s.out ?? "runs";
  const mapped = new Map<string, Pos>();
  const unmapped = new Map<string, string[]>();
  const points: SweepPoint[] = [];
  for (const p of exp.points) {
    const { sets, from } = pointSets(s, p);
    try {
      const r = resolveExperimentText(s.base, baseText, sets, readFile);
      const paths = runPaths(out, r.config.name, r.config.variant, r.hash);
      points.push({
        ...p,
        seed: r.config.seed,
        sets,
        hash: r.hash,
        experiment: r.config.name,
        dir: paths.dir,
        paths,
        config: r.config,
      });
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      for (const line of e.message.split("\n")) {
        const i = sets.findIndex((a) => line.startsWith(`--set ${a}: `));
        // sets[i] was made from from[i]; the last one (variant=<name>) from no setting.
        const st = i >= 0 && i < from.length ? from[i] : undefined;
        if (st) {
          const rest = line.slice(`--set ${sets[i]}: `.length);
          const onKey = /^(unknown key|'[^']*' is not a key path|'extends')/.test(rest);
          const at = onKey ? st.keyAt : st.valueAt;
          mapped.set(`${fmtPos(at)}: ${st.where}: ${rest}`, at);
        } else {
          const who = `${p.variant}${p.seedSetting ? ` seed ${showValue(p.seedValue)}` : ""}`;
          unmapped.set(line, [...(unmapped.get(line) ?? []), who]);
        }
      }
    }
  }
  if (mapped.size || unmapped.size) {
    const lines = [...mapped].sort((a, b) => a[1].line - b[1].line || a[1].col - b[1].col)
      .map(([l]) => l);
    for (const [line, who] of unmapped) {
      lines.push(
        who.length === exp.points.length ? line : `${line} (point${who.length > 1 ? "s" : ""} ` +
          `${who.slice(0, 3).join(", ")}${who.length > 3 ? ` and ${who.length - 3} more` : ""})`,
      );
    }
    throw new InputError(lines.join("\n"));
  }
  const collide = new Map<string, SweepPoint>();
  for (const p of points) {
    const prev = collide.get(p.dir);
    if (prev) {
      throw new InputError(
        `${s.file}: points ${prev.variant} seed ${prev.seed} and ${p.variant} seed ${p.seed} ` +
          `resolve to the same run folder ${p.dir}`,
      );
    }
    collide.set(p.dir, p);
    if (p.experiment === s.name && p.variant === "logs") {
      throw new InputError(
        `${s.file}: a variant named 'logs' would share ${join(out, s.name, "logs")} with the ` +
          "sweep's log folder; rename it",
      );
    }
  }
  return { ...exp, spec: s, points, out, sweepDir: join(out, s.name) };
}

/** Reads, parses, expands and checks a sweep file (see resolveSweep). */
export async function loadSweep(path: string, o: ResolveOptions = {}): Promise<ResolvedSweep> {
  let text: string;
  try {
    text = await readTextBounded(path, MAX_CONFIG_BYTES, "experiment files");
  } catch (e) {
    if (e instanceof BoundedReadError && !e.notFound) throw new InputError(e.message);
    const why = e instanceof BoundedReadError ? e.problem : (e as Error).message;
    throw new InputError(`${path}: cannot read the sweep file (${why})`);
  }
  return resolveSweep(parseSweepText(path, text), o);
}

/**
 * The `deno task run` command line that runs one point alone (arguments, unquoted): the base
 * file, its `--set` arguments, `--out` unless it is the default, and any extra flags.
 */
export function runArgs(sw: ResolvedSweep, p: SweepPoint, extra: string[] = []): string[] {
  return [
    sw.spec.base,
    ...p.sets.flatMap((a) => ["--set", a]),
    ...(sw.out === "runs" ? [] : ["--out", sw.out]),
    ...extra,
  ];
}

/** `deno task run ...` as one shell-quoted line. */
export function runCommandLine(sw: ResolvedSweep, p: SweepPoint, extra: string[] = []): string {
  return ["deno", "task", "run", ...runArgs(sw, p, extra)].map(shellQuote).join(" ");
}
