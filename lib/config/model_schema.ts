/**
 * The `model` section of an experiment file (plus the image size and training batch it needs),
 * validated strictly: unknown keys (with a "did you mean"), wrong types and bad values fail with
 * file:line:col. Other top-level sections are accepted and ignored here; the full experiment
 * schema validates them.
 *
 * Keys are snake_case as in YAML; they map onto the camelCase options of lib/models/*.
 */
import { isMap, LineCounter, parseDocument } from "../deps.ts";
import { InputError } from "./demo_schema.ts";
import { MODEL_NAMES, type ModelName, MODELS } from "../models/registry.ts";
import { checkLViTOptions, type LViTOptions } from "../models/lvit.ts";

export { InputError };

/** The resolved model settings of one experiment file. */
export interface ModelConfig {
  name: ModelName;
  /** Options over the registry defaults (camelCase). */
  options: Record<string, unknown>;
  /** Square image side: model.image_size, else data.image_size, else data.size, else 224. */
  imageSize: number;
  /** train.batch when present, else 1. */
  trainBatch: number;
}

type Check = (v: unknown) => string | null;
const posInt: Check = (
  v,
) => (Number.isInteger(v) && (v as number) > 0 ? null : "a positive integer");
const bool: Check = (v) => (typeof v === "boolean" ? null : "true or false");
const oneOf = (...xs: unknown[]): Check => (v) =>
  xs.includes(v) ? null : `one of ${xs.map((x) => JSON.stringify(x)).join(", ")}`;
const rate: Check = (v) => typeof v === "number" && v >= 0 && v < 1 ? null : "a number in [0, 1)";
const int: Check = (v) => (Number.isInteger(v) ? null : "an integer");
const widths: Check = (v) =>
  Array.isArray(v) && v.length >= 2 && v.every((x) => Number.isInteger(x) && x > 0)
    ? null
    : "a list of at least 2 positive integers";

/** One YAML key: its option name and its check. */
type Key = [option: string, check: Check];

const LVIT_KEYS: Record<string, Key> = {
  base_channels: ["baseChannels", posInt],
  image_size: ["imageSize", posInt],
  depth: ["depth", posInt],
  heads: ["heads", posInt],
  mlp_ratio: ["mlpRatio", posInt],
  plam: ["plam", bool],
  text: ["text", bool],
  text_substitute: ["textSubstitute", oneOf("none", "image")],
  text_level: ["textLevel", oneOf(1, 2, 3, 4)],
  text_tokens: ["textTokens", posInt],
  text_dim: ["textDim", posInt],
  dropout: ["dropout", rate],
  dropout_enabled: ["dropoutEnabled", bool],
  dropout_seed: ["seed", int],
  register_unused: ["registerUnused", bool],
  out_channels: ["outChannels", posInt],
};

/** Allowed keys of `model` (besides `name`) per model. */
const KEYS: Record<ModelName, Record<string, Key>> = {
  "lvit-t": LVIT_KEYS,
  "lvit-tw": LVIT_KEYS,
  "lvit-l": LVIT_KEYS,
  "lvit-lw": LVIT_KEYS,
  unet: {
    base_channels: ["baseChannels", posInt],
    image_size: ["imageSize", posInt],
    out_channels: ["outChannels", posInt],
  },
  "unet-small": {
    widths: ["widths", widths],
    image_size: ["imageSize", posInt],
    out_channels: ["outChannels", posInt],
  },
};

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const sub = d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, sub);
    }
  }
  return d[a.length][b.length];
}

/** " (did you mean 'x'?)" for the closest candidate within a few edits, else "". */
export function didYouMean(key: string, candidates: string[]): string {
  let best = "", bestD = Infinity;
  for (const c of candidates) {
    const dd = distance(key, c);
    if (dd < bestD) [best, bestD] = [c, dd];
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean '${best}'?)` : "";
}

type YamlNode = { range?: number[]; items?: YamlPair[]; toJSON?: () => unknown };
type YamlPair = { key: unknown; value: unknown };

/** Parses `text` (the contents of `file`) and resolves its model section. */
export function parseModelConfig(file: string, text: string): ModelConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  const at = (node: unknown) => {
    const r = (node as YamlNode | undefined)?.range;
    if (!r) return file;
    const { line, col } = lc.linePos(r[0]);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length) {
    const e = doc.errors[0];
    const { line, col } = lc.linePos(e.pos[0]);
    throw new InputError(`${file}:${line}:${col}: ${e.message.split("\n")[0]}`);
  }
  const root = doc.contents;
  if (!isMap(root)) throw new InputError(`${at(root)}: the experiment must be a mapping`);

  /** The pair of `key` in mapping `m`, if any. */
  const pair = (m: unknown, key: string): YamlPair | undefined =>
    isMap(m) ? (m.items as YamlPair[]).find((it) => keyOf(it) === key) : undefined;
  const value = (p: YamlPair | undefined) =>
    p ? (p.value as YamlNode | null)?.toJSON?.() ?? null : undefined;

  const errors: string[] = [];
  const modelPair = pair(root, "model");
  if (!modelPair) throw new InputError(`${at(root)}: missing key 'model'`);
  const model = modelPair.value;
  if (!isMap(model)) {
    throw new InputError(`${at(model ?? modelPair.key)}: 'model' must be a mapping`);
  }

  const namePair = pair(model, "name");
  const name = value(namePair);
  if (namePair === undefined) throw new InputError(`${at(model)}: missing key 'model.name'`);
  if (typeof name !== "string" || !(name in MODELS)) {
    throw new InputError(
      `${at(namePair.value)}: 'model.name' must be one of ${MODEL_NAMES.join(", ")} (got ` +
        `${JSON.stringify(name)})${typeof name === "string" ? didYouMean(name, MODEL_NAMES) : ""}`,
    );
  }
  const keys = KEYS[name as ModelName];
  const options: Record<string, unknown> = {};
  let imageAt: unknown = undefined;
  for (const it of model.items as YamlPair[]) {
    const key = keyOf(it);
    if (key === "name") continue;
    const rule = Object.hasOwn(keys, key) ? keys[key] : undefined;
    if (!rule) {
      const allowed = ["name", ...Object.keys(keys)];
      errors.push(
        `${at(it.key)}: unknown key 'model.${key}' for model ${name}` +
          `${didYouMean(key, allowed)}; allowed: ${allowed.join(", ")}`,
      );
      continue;
    }
    const v = value(it);
    const want = rule[1](v);
    if (want) {
      errors.push(
        `${at(it.value ?? it.key)}: 'model.${key}' must be ${want} (got ${JSON.stringify(v)})`,
      );
      continue;
    }
    options[rule[0]] = v;
    if (key === "image_size") imageAt = it.value;
  }

  // The image side: the model's own setting, else the data section's.
  const data = pair(root, "data")?.value;
  const dataSize = pair(data, "image_size") ?? pair(data, "size");
  let imageSize = 224;
  if (dataSize) {
    const v = value(dataSize);
    if (posInt(v)) errors.push(`${at(dataSize.value)}: the image size must be a positive integer`);
    else imageSize = v as number;
    if (options.imageSize !== undefined && options.imageSize !== v) {
      errors.push(
        `${at(imageAt)}: 'model.image_size' (${options.imageSize}) differs from the data ` +
          `section's image size (${JSON.stringify(v)}) at ${at(dataSize.value)}`,
      );
    }
  }
  if (options.imageSize !== undefined) imageSize = options.imageSize as number;
  else imageAt = dataSize?.value ?? modelPair.key;

  const batchPair = pair(pair(root, "train")?.value, "batch");
  let trainBatch = 1;
  if (batchPair) {
    const v = value(batchPair);
    if (posInt(v)) errors.push(`${at(batchPair.value)}: 'train.batch' must be a positive integer`);
    else trainBatch = v as number;
  }
  if (errors.length) throw new InputError(errors.join("\n"));

  // Whole-configuration checks, reported at the first key their message names.
  const culprit = (msg: string): unknown => {
    if (/^lvit: image_size/.test(msg)) return imageAt;
    let best: YamlPair | undefined, bestAt = Infinity;
    for (const it of model.items as YamlPair[]) {
      const i = msg.indexOf(keyOf(it));
      if (keyOf(it) !== "name" && i >= 0 && i < bestAt) [best, bestAt] = [it, i];
    }
    return best?.key ?? modelPair.key;
  };
  const entry = MODELS[name as ModelName];
  if (name.startsWith("lvit")) {
    const o = { ...entry.defaults, ...options, imageSize } as LViTOptions;
    try {
      checkLViTOptions(o);
    } catch (e) {
      throw new InputError(`${at(culprit((e as Error).message))}: ${(e as Error).message}`);
    }
  } else {
    const levels = name === "unet"
      ? 5
      : ((options.widths ?? (entry.defaults as { widths: number[] }).widths) as number[]).length;
    const div = 2 ** (levels - 1);
    if (imageSize % div !== 0) {
      throw new InputError(
        `${at(imageAt)}: ${name} needs an image size divisible by ${div} (got ${imageSize})`,
      );
    }
  }
  // LViT's token grid depends on the side; the U-Nets take any valid size from the input.
  if (name.startsWith("lvit")) options.imageSize = imageSize;
  else delete options.imageSize;
  return { name: name as ModelName, options, imageSize, trainBatch };
}

function keyOf(it: YamlPair): string {
  return String((it.key as { value?: unknown })?.value ?? it.key);
}
