/**
 * Model options, declared once next to each model: for every camelCase option of a model, its
 * YAML key in the experiment's `model` section, its zod type and range, its default, a one-line
 * description and its unit; and the checks that span options, each naming the YAML key to blame.
 * Everything else is derived from a declaration: the model's defaults (the registry's), the
 * experiment schema's `model` section (lib/config/schema.ts), the README's key table
 * (`formatSchemaKeys`), the option listing of `deno task inspect`, the mapping from YAML keys to
 * options (`modelOptions`), and the messages for bad values, in YAML's words whether the options
 * came from an experiment file (file:line:col, lib/config/load.ts) or from code (`checkOptions`).
 *
 * A declaration is typed against the model's options interface: an option without a spec, a
 * spec without an option, a default or a schema of the wrong type, or a check naming an option
 * that does not exist fails to type-check, so adding an option touches the model's file only.
 */
import { expectsOf, show, type ValueSchema } from "../config/leaf.ts";

export type { ValueSchema } from "../config/leaf.ts";

/** How one option is declared (the input of {@link defineOptions}). */
export interface OptionSpec<T> {
  /** Its key in the experiment's `model` section (snake_case). */
  key: string;
  /** Type and range of one value (zod); its phrase (lib/config/leaf.ts) says them in messages. */
  schema: ValueSchema<T>;
  /** The value when the experiment leaves the key out. */
  default: T;
  /** One line: what it does (README table, inspect, schema description). */
  doc: string;
  /** The unit of a numeric option ("channels", "pixels"), when it has one. */
  unit?: string;
}

/**
 * One spec per option of `O`, keyed by the camelCase option, in the order of the YAML keys
 * (the order of "allowed: ..." messages and of the README rows).
 */
export type OptionSpecs<O> = { readonly [K in keyof O]-?: OptionSpec<Exclude<O[K], undefined>> };

/** A check across options (the input of {@link defineOptions}). */
export interface OptionCheck<O> {
  /**
   * The options it reads. A failure is reported at the first one's YAML key; the others locate
   * it when the first was not written in the experiment (its default is at fault only with them).
   */
  keys: readonly (keyof O & string)[];
  /** A message (naming the YAML keys) when `o` fails the check, else undefined. */
  test(o: O): string | undefined;
}

/** One declared option, as the config layer reads it. */
export interface ModelOption {
  /** The camelCase option of the model. */
  readonly option: string;
  /** Its key in the experiment's `model` section. */
  readonly key: string;
  /** Type and range of one value (zod). */
  readonly schema: ValueSchema;
  /** The default (the model variant's, see {@link withDefaults}). */
  readonly default: unknown;
  /** One line: what it does. */
  readonly doc: string;
  /** The unit, when it has one. */
  readonly unit?: string;
}

/** One declared check, as the config layer reads it. */
export interface ModelCheck {
  /** The YAML keys it reads; the first is blamed, the others locate it when it is unset. */
  readonly keys: readonly string[];
  /** A message when the options (camelCase, complete) fail the check, else undefined. */
  readonly test: (o: Record<string, unknown>) => string | undefined;
}

/** A model's option declaration: its options in YAML order, its checks, its defaults. */
export interface ModelOptions<O> {
  /** The options, in the order of their YAML keys. */
  readonly list: readonly ModelOption[];
  /** The checks that span options. */
  readonly checks: readonly ModelCheck[];
  /** Every option's default. */
  readonly defaults: O;
}

/** A problem with a model's options: the YAML keys at fault (the first is blamed), the message. */
export interface OptionProblem {
  /** The YAML keys: the one to blame first, then those that locate it when it is unset. */
  keys: string[];
  /** What is wrong, in YAML's key names. */
  message: string;
}

/**
 * Declares a model's options. Throws (a bug in the declaration, seen at import) when two
 * options share a YAML key or the defaults fail their own schemas or checks.
 */
export function defineOptions<O>(
  specs: OptionSpecs<O>,
  checks: readonly OptionCheck<O>[] = [],
): ModelOptions<O> {
  const list: ModelOption[] = Object.entries(specs as Record<string, OptionSpec<unknown>>).map((
    [option, s],
  ) => ({ option, key: s.key, schema: s.schema, default: s.default, doc: s.doc, unit: s.unit }));
  return validated({
    list,
    checks: checksOf(list, checks),
    defaults: Object.fromEntries(list.map((o) => [o.option, o.default])) as O,
  });
}

/** The checks with their options named by YAML key, as the config layer reads them. */
function checksOf<O>(list: readonly ModelOption[], checks: readonly OptionCheck<O>[]) {
  const keyOf = new Map(list.map((o) => [o.option, o.key]));
  return checks.map((c): ModelCheck => ({
    keys: c.keys.map((k) => keyOf.get(k)!),
    test: (o) => c.test(o as O),
  }));
}

/** The same declaration with other defaults (a model variant: LViT-TW is LViT-T without text). */
export function withDefaults<O>(m: ModelOptions<O>, over: Partial<O>): ModelOptions<O> {
  const o = over as Record<string, unknown>;
  return validated({
    list: m.list.map((s) => Object.hasOwn(o, s.option) ? { ...s, default: o[s.option] } : s),
    checks: m.checks,
    defaults: { ...m.defaults, ...over },
  });
}

/**
 * A declaration with more options: `base`'s, then `specs`, with `base`'s checks and `checks`
 * (for a model that adds settings to another's, as a derived model or a test does).
 */
export function extendOptions<O, E>(
  base: ModelOptions<O>,
  specs: OptionSpecs<E>,
  checks: readonly OptionCheck<O & E>[] = [],
): ModelOptions<O & E> {
  const more = defineOptions<E>(specs);
  const list = [...base.list, ...more.list];
  return validated({
    list,
    checks: [...base.checks, ...checksOf(list, checks)],
    defaults: { ...base.defaults, ...more.defaults },
  });
}

function validated<O>(m: ModelOptions<O>): ModelOptions<O> {
  const keys = m.list.map((o) => o.key);
  const dup = keys.find((k, i) => keys.indexOf(k) !== i);
  if (dup !== undefined) throw new Error(`model options: YAML key '${dup}' declared twice`);
  const bad = optionProblems(m, m.defaults as Record<string, unknown>);
  if (bad.length) throw new Error(`model options: bad defaults: ${bad[0].message}`);
  return m;
}

/**
 * What is wrong with complete options `o` (camelCase): each option that fails its schema, or
 * when all pass, each check that fails. Empty when they are valid.
 */
export function optionProblems(
  m: ModelOptions<unknown>,
  o: Readonly<Record<string, unknown>>,
): OptionProblem[] {
  const out: OptionProblem[] = [];
  for (const s of m.list) {
    const v = o[s.option];
    if (!s.schema.safeParse(v).success) {
      out.push({
        keys: [s.key],
        message: `${s.key} must be ${expectsOf(s.schema)} (got ${show(v)})`,
      });
    }
  }
  // The checks may divide by an option or index by one: they need every option valid.
  if (out.length) return out;
  for (const c of m.checks) {
    const message = c.test(o as Record<string, unknown>);
    if (message !== undefined) out.push({ keys: [...c.keys], message });
  }
  return out;
}

/**
 * Throws a RangeError `<model>: <problem>; ...` when options `o` (camelCase, complete) are not
 * valid: the check that models built from code (not from an experiment file) get.
 */
export function checkOptions(model: string, m: ModelOptions<unknown>, o: object): void {
  const bad = optionProblems(m, o as Record<string, unknown>);
  if (bad.length) throw new RangeError(`${model}: ${bad.map((p) => p.message).join("; ")}`);
}

/** The camelCase options set by a `model` section's YAML keys (keys left out are left out). */
export function optionsFromKeys(
  m: ModelOptions<unknown>,
  section: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of m.list) if (Object.hasOwn(section, s.key)) out[s.option] = section[s.key];
  return out;
}
