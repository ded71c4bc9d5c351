/**
 * The experiment schema (zod): every key of an experiment file with its type, default, unit and
 * description. The resolved configuration keeps YAML's snake_case; `modelOptions` maps the
 * `model` section onto the camelCase options of lib/models/*.
 *
 * Defaults are the reference training recipe (lvit-reference.md 5); the per-model defaults come
 * from the model registry (lib/models/registry.ts) and are not repeated here. Besides the
 * per-key checks the schema checks what spans keys: text.encoder "bert" needs text.model_dir,
 * and the image size must suit the model (LViT: checkLViTOptions; U-Nets: divisible by
 * 2^(levels - 1)).
 *
 * Positions (file:line:col) are not the schema's business: lib/config/load.ts maps each issue's
 * key path back to the YAML node that set it.
 */
import { z } from "../deps.ts";
import { MODEL_NAMES, type ModelName, MODELS } from "../models/registry.ts";
import { checkLViTOptions, type LViTOptions } from "../models/lvit.ts";
import { DURATION_PHRASE, parseDuration } from "./duration.ts";

// ---------------------------------------------------------------------------------------------
// Leaf types, each with the phrase error messages use ("must be a positive integer").

/** What each leaf schema expects, in words; wrappers (default, nullable) are unwrapped first. */
const PHRASES = new WeakMap<object, string>();
/** Units of the fields that have one, keyed by the outermost (described) schema. */
const UNITS = new WeakMap<object, string>();

function expects<T extends z.ZodType>(s: T, phrase: string): T {
  PHRASES.set(s, phrase);
  return s;
}

const posInt = () => expects(z.number().int().positive(), "a positive integer");
const nonNegInt = () => expects(z.number().int().min(0), "an integer >= 0");
const int = () => expects(z.number().int(), "an integer");
const posNum = () => expects(z.number().positive(), "a positive number");
const nonNegNum = () => expects(z.number().min(0), "a number >= 0");
const rate = () => expects(z.number().min(0).lt(1), "a number in [0, 1)");
const bool = () => expects(z.boolean(), "true or false");
const text = () => expects(z.string(), "a string");
const path = () => expects(z.string().min(1), "a non-empty string");
const nullablePath = () => expects(z.string().min(1).nullable(), "a non-empty string or null");
/** Run-folder names: no separators, and not "." or "..". */
export const NAME_PATTERN: RegExp = /^(?!\.+$)[A-Za-z0-9._-]+$/;
const name = () =>
  expects(z.string().regex(NAME_PATTERN), "a name of letters, digits, '.', '_' and '-'");

/** A field with a default: `doc` (and the unit, when it has one) is its description. */
function field<T extends z.ZodType>(
  s: T,
  value: z.output<T>,
  doc: string,
  unit?: string,
): z.ZodDefault<T> {
  const d = s.default(value as never).describe(unit ? `${doc} (unit: ${unit})` : doc);
  if (unit) UNITS.set(d, unit);
  return d;
}

/** A required field: `doc` is its description. */
function required<T extends z.ZodType>(s: T, doc: string): T {
  const d = s.describe(doc);
  const p = PHRASES.get(s);
  if (p) PHRASES.set(d, p);
  return d;
}

/** An optional section: left out, it resolves to all its defaults. */
function section<S extends z.core.$ZodLooseShape>(shape: S, doc: string) {
  return z.strictObject(shape).prefault({} as never).describe(doc);
}

// ---------------------------------------------------------------------------------------------
// The model section: one strict mapping per registered model, chosen by `name`.

/** One YAML key of the model section. */
interface ModelKey {
  /** The camelCase option of lib/models/* it sets. */
  option: string;
  schema: () => z.ZodType;
  doc: string;
  unit?: string;
}

const MODEL_KEY_SPECS: Record<string, ModelKey> = {
  base_channels: {
    option: "baseChannels",
    schema: posInt,
    doc: "Width C0 of the first level; deeper levels have 2, 4, 8 and 8 times C0",
    unit: "channels",
  },
  depth: { option: "depth", schema: posInt, doc: "Transformer blocks per ViT object" },
  heads: {
    option: "heads",
    schema: posInt,
    doc: "Attention heads per transformer block (must divide base_channels)",
  },
  mlp_ratio: {
    option: "mlpRatio",
    schema: posInt,
    doc: "Hidden width of the ViT MLPs as a multiple of the token width",
  },
  plam: { option: "plam", schema: bool, doc: "PLAM on the decoder skips; false passes them as is" },
  text: { option: "text", schema: bool, doc: "Read the text input; false is the TW variant" },
  text_substitute: {
    option: "textSubstitute",
    schema: () => z.enum(["none", "image"]),
    doc: "Without text, what CTBN3 adds: none drops the addition, image adds chunk means of " +
      "the level's own patch tokens",
  },
  text_level: {
    option: "textLevel",
    schema: () => z.literal([1, 2, 3, 4]),
    doc: "ViT level whose patch tokens receive the text (1 is the reference)",
  },
  text_tokens: {
    option: "textTokens",
    schema: posInt,
    doc: "Words per sample of the text input",
    unit: "tokens",
  },
  text_dim: {
    option: "textDim",
    schema: posInt,
    doc: "Width of one word vector of the text input (768: BERT-base)",
    unit: "features",
  },
  dropout: { option: "dropout", schema: rate, doc: "Dropout rate of the ViT embeddings and MLPs" },
  dropout_enabled: {
    option: "dropoutEnabled",
    schema: bool,
    doc: "Apply dropout in training (evaluation never drops)",
  },
  dropout_seed: { option: "seed", schema: int, doc: "Seed mixed into the dropout keys" },
  register_unused: {
    option: "registerUnused",
    schema: bool,
    doc: "Register the modules the reference defines but never runs (checkpoint compatibility)",
  },
  out_channels: {
    option: "outChannels",
    schema: posInt,
    doc: "Output channels (1: one binary mask)",
    unit: "channels",
  },
  widths: {
    option: "widths",
    schema: () =>
      expects(
        z.array(posInt()).min(2),
        "a list of at least 2 positive integers",
      ),
    doc: "Channel widths per level, shallowest first",
    unit: "channels",
  },
};

const LVIT_KEYS = [
  "base_channels",
  "depth",
  "heads",
  "mlp_ratio",
  "plam",
  "text",
  "text_substitute",
  "text_level",
  "text_tokens",
  "text_dim",
  "dropout",
  "dropout_enabled",
  "dropout_seed",
  "register_unused",
  "out_channels",
] as const;

/** The keys of the model section (besides `name` and `image_size`) per model. */
export const MODEL_KEYS: { readonly [N in ModelName]: readonly string[] } = {
  "lvit-t": LVIT_KEYS,
  "lvit-tw": LVIT_KEYS,
  "lvit-l": LVIT_KEYS,
  "lvit-lw": LVIT_KEYS,
  unet: ["base_channels", "out_channels"],
  "unet-small": ["widths", "out_channels"],
};

/** The registry names of the LViT variants (W: without text). */
export type LViTName = "lvit-t" | "lvit-tw" | "lvit-l" | "lvit-lw";

/** The model section of an LViT variant (resolved). */
export interface LViTModelConfig {
  /** Which LViT variant (T or L, with or without text). */
  name: LViTName;
  /** Square image side: a multiple of 16, at least 64. */
  image_size: number;
  /** A checkpoint to initialise from (relative to the experiment file that set it). */
  init_from?: string | null;
  /** Width C0 of the first level; deeper levels have 2, 4, 8 and 8 times C0. */
  base_channels: number;
  /** Transformer blocks per ViT object. */
  depth: number;
  /** Attention heads per transformer block (must divide base_channels). */
  heads: number;
  /** Hidden width of the ViT MLPs as a multiple of the token width. */
  mlp_ratio: number;
  /** PLAM on the decoder skips; false passes them as is. */
  plam: boolean;
  /** Read the text input; false is the TW variant. */
  text: boolean;
  /** Without text, what CTBN3 adds: nothing, or chunk means of the level's patch tokens. */
  text_substitute: "none" | "image";
  /** ViT level whose patch tokens receive the text (1 is the reference). */
  text_level: 1 | 2 | 3 | 4;
  /** Words per sample of the text input. */
  text_tokens: number;
  /** Width of one word vector of the text input (768: BERT-base). */
  text_dim: number;
  /** Dropout rate of the ViT embeddings and MLPs. */
  dropout: number;
  /** Apply dropout in training (evaluation never drops). */
  dropout_enabled: boolean;
  /** Seed mixed into the dropout keys. */
  dropout_seed: number;
  /** Register the modules the reference defines but never runs (checkpoint compatibility). */
  register_unused: boolean;
  /** Output channels (1: one binary mask). */
  out_channels: number;
}

/** The model section of the reference U-Net baseline (resolved). */
export interface UNetModelConfig {
  /** The reference U-Net. */
  name: "unet";
  /** Square image side, divisible by 16. */
  image_size: number;
  /** A checkpoint to initialise from (relative to the experiment file that set it). */
  init_from?: string | null;
  /** Width of the first level; deeper levels have 2, 4, 8 and 8 times it. */
  base_channels: number;
  /** Output channels (1: one binary mask). */
  out_channels: number;
}

/** The model section of the engine milestone's small U-Net (resolved). */
export interface UNetSmallModelConfig {
  /** The engine milestone's small U-Net. */
  name: "unet-small";
  /** Square image side, divisible by 2^(levels - 1) with levels = the length of `widths`. */
  image_size: number;
  /** A checkpoint to initialise from (relative to the experiment file that set it). */
  init_from?: string | null;
  /** Channel widths per level, shallowest first. */
  widths: number[];
  /** Output channels (1: one binary mask). */
  out_channels: number;
}

/** The resolved model section. */
export type ModelConfig = LViTModelConfig | UNetModelConfig | UNetSmallModelConfig;

/** Whether a model name is one of the LViT variants. */
export function isLViT(name: ModelName): name is LViTName {
  return name.startsWith("lvit");
}

/**
 * `model.init_from`: optional, so experiments without it keep their config hash. The loader
 * resolves the path (LoadedExperiment.initFrom); lib/run/init_from.ts reads it at run start.
 */
const initFrom = () =>
  expects(
    z.string().min(1).nullable(),
    "a path (a .safetensors or .pth file, or a run folder) or null",
  ).optional().describe(
    "Checkpoint a fresh run starts from (not a resumed one): a .safetensors or PyTorch .pth " +
      "file or a run folder (its best, else last checkpoint), relative to the file that sets " +
      "it. Tensors of the model's names and shapes are copied, the rest keep their seeded init " +
      "(LViT_pretrain); null: none",
  );

/** The default image side when the registry has none (the U-Nets take any valid size). */
const DEFAULT_IMAGE_SIZE = MODELS["lvit-t"].defaults.imageSize;

function modelSchema(n: ModelName) {
  const defaults = MODELS[n].defaults as unknown as Record<string, unknown>;
  const shape: Record<string, z.ZodType> = {
    name: z.literal(n).describe(`${n}: ${MODELS[n].description}`),
    image_size: field(
      posInt(),
      (defaults.imageSize as number | undefined) ?? DEFAULT_IMAGE_SIZE,
      "Square image side. LViT: a multiple of 16 and at least 64 ((side/16)^2 tokens per ViT " +
        "level); unet: divisible by 16; unet-small: divisible by 2^(levels - 1), levels = the " +
        "length of widths",
      "pixels",
    ),
  };
  for (const key of MODEL_KEYS[n]) {
    const spec = MODEL_KEY_SPECS[key];
    const value = defaults[spec.option];
    if (value === undefined) throw new Error(`registry: ${n} has no default for ${spec.option}`);
    shape[key] = field(spec.schema(), value as never, spec.doc, spec.unit);
  }
  shape.init_from = initFrom();
  return z.strictObject(shape);
}

/** The model section: a strict mapping per model, chosen by `name`. */
const ModelSchema = z.discriminatedUnion(
  "name",
  MODEL_NAMES.map(modelSchema) as unknown as [
    z.ZodObject<z.core.$ZodLooseShape>,
    ...z.ZodObject<z.core.$ZodLooseShape>[],
  ],
).describe(
  "The network: name picks the model, the other keys are its options (defaults: the model " +
    "registry's)",
) as unknown as z.ZodType<ModelConfig>;

// ---------------------------------------------------------------------------------------------
// The experiment.

/** Data sets an experiment can name (the real ones in the LViT folder layout). */
export const DATASETS = ["synth", "qata", "mosmed", "monuseg"] as const;
/** Backend requests (the same as lib/backends/select.ts BACKENDS). */
export const BACKEND_CHOICES = ["auto", "webgpu", "cpu"] as const;

const Shape = {
  name: required(name(), "Experiment name; the run folder is runs/<name>/<variant>/<hash>/"),
  variant: field(name(), "default", "Variant name, the second level of the run folder"),
  description: field(text(), "", "Free text shown in reports"),
  seed: field(
    nonNegInt(),
    666,
    "Seed of initialisation, shuffling and augmentation (the reference's 666)",
  ),
  backend: field(
    z.enum(BACKEND_CHOICES),
    "auto",
    "Where to run: auto takes webgpu on a hardware adapter and cpu on a software one",
  ),
  data: z.strictObject({
    dataset: z.enum(DATASETS).describe(
      "Data set: synth is generated (no download); qata, mosmed and monuseg are read in the " +
        "LViT folder layout",
    ),
    root: field(
      nullablePath(),
      null,
      "Folder of the data set; null: the LVIT_DATA environment variable for the real data sets, " +
        "a generated folder under cache_dir for synth",
    ),
    cache_dir: field(
      path(),
      ".cache",
      "Folder for decoded tensors, text features and generated data",
    ),
    augment: field(
      bool(),
      true,
      "Augment the train split as the reference's RandomGenerator does",
    ),
    synth: section({
      seed: field(nonNegInt(), 0, "Seed of the generated images"),
      train: field(posInt(), 64, "Generated train images", "images"),
      val: field(posInt(), 16, "Generated validation images", "images"),
      test: field(posInt(), 16, "Generated test images", "images"),
    }, "The generated data set (only used when dataset is synth)"),
  }).describe("The data set and where it lives"),
  text: section({
    encoder: field(
      z.enum(["builtin", "bert"]),
      "builtin",
      "Text features: builtin needs no download; bert runs a BERT-base model (text.model or model_dir)",
    ),
    model_dir: field(
      nullablePath(),
      null,
      "Folder of the BERT model; for encoder bert, this or text.model",
    ),
    // Optional (absent, not null, when unset) so experiments without it keep their config hash.
    model: expects(
      z.string().min(1).nullable(),
      "a hub model id (owner/name[@revision]), a folder, or null",
    ).optional().describe(
      "BERT model for encoder bert: a Hugging Face hub id (e.g. Xenova/bert-base-uncased, " +
        "downloaded once into cache_dir/hub, then used offline) or a local folder; " +
        "instead of model_dir",
    ),
  }, "How the sample descriptions become text features"),
  model: ModelSchema,
  train: section({
    epochs: field(posInt(), 2000, "Training epochs at most", "epochs"),
    batch: field(posInt(), 2, "Training batch size", "images"),
    lr: field(posNum(), 0.001, "Initial learning rate of Adam"),
    betas: field(
      expects(z.tuple([rate(), rate()]), "a list of 2 numbers in [0, 1)"),
      [0.9, 0.999],
      "Adam's beta1 and beta2",
    ),
    eps: field(posNum(), 1e-8, "Adam's epsilon"),
    weight_decay: field(nonNegNum(), 0, "L2 weight decay added to the gradients (reference 0)"),
    schedule: section({
      kind: field(
        z.enum(["cosine-restarts", "constant"]),
        "cosine-restarts",
        "cosine-restarts: cosine annealing with warm restarts, stepped once per epoch after " +
          "validation; constant: lr throughout",
      ),
      t0: field(posInt(), 10, "Length of the first cosine cycle", "epochs"),
      t_mult: field(posInt(), 1, "Factor by which each cycle is longer than the previous"),
      eta_min: field(nonNegNum(), 0.0001, "Learning rate at the bottom of each cycle"),
    }, "Learning-rate schedule"),
    patience: field(
      posInt(),
      50,
      "Stop after this many epochs without a new best validation Dice",
      "epochs",
    ),
    min_save_epoch: field(
      posInt(),
      6,
      "First 1-based epoch whose validation Dice may count as best (the reference's > 5)",
      "epochs",
    ),
    eval_every: field(posInt(), 1, "Validate every this many epochs", "epochs"),
    loss: section({
      dice: field(nonNegNum(), 0.5, "Weight of the Dice loss"),
      bce: field(nonNegNum(), 0.5, "Weight of the binary cross-entropy"),
    }, "Loss weights: dice * Dice loss + bce * BCE"),
    checkpoint_every: field(
      nonNegInt(),
      0,
      "Write checkpoints/last.safetensors every this many steps as well; 0: at the end of " +
        "every epoch only",
      "steps",
    ),
    max_steps_per_epoch: field(
      expects(z.number().int().positive().nullable(), "a positive integer or null"),
      null,
      "Cap on the training steps of one epoch, for quick runs; null: the whole train split",
      "steps",
    ),
    labeled_fraction: field(
      expects(z.number().gt(0).lte(1), "a number in (0, 1]"),
      1,
      "Fraction of the train split used with its masks, picked from the seed; below 1 the rest " +
        "is trained semi-supervised (see semi)",
    ),
    time_limit: field(
      expects(
        z.union([z.number(), z.string()]).refine((v) => parseDuration(v) !== null, {
          error: (iss) =>
            `'train.time_limit' must be ${DURATION_PHRASE}, or null ` +
            `(got ${JSON.stringify(iss.input)})`,
        }).nullable(),
        'a duration ("90s", "45m", "2h", "1h30m", "1d") or seconds, or null',
      ),
      null,
      "Stop at the first epoch end this long after the process started: checkpoints/last." +
        "safetensors is written and the run exits 75 (--resume continues it); --time-limit " +
        "overrides it; not part of the run's identity (config hash); null: no limit",
    ),
  }, "Optimiser, schedule, early stopping and checkpoints"),
  semi: section({
    prototype_epochs: field(
      nonNegInt(),
      10,
      "Epochs on the labeled subset alone before pseudo labels are made and the unlabeled " +
        "images join (the reference's prototype model)",
      "epochs",
    ),
    epi: field(
      bool(),
      true,
      "Exponential Pseudo-label Iteration: each epoch, pseudo labels become " +
        "epi_beta * previous + (1 - epi_beta) * prediction; false: the latest prediction",
    ),
    epi_beta: field(rate(), 0.99, "EPI's smoothing factor beta"),
    binarize: field(
      bool(),
      false,
      "Train on pseudo labels thresholded at 0.5 instead of the smoothed probabilities",
    ),
    lv_loss: field(
      bool(),
      true,
      "Add the language-vision loss on unlabeled images: 1 - cosine(prediction, contrastive " +
        "mask whose text is most similar)",
    ),
    lv_weight: field(nonNegNum(), 0.1, "Weight of the LV loss (the reference helper's 0.1)"),
    contrastive_dir: field(
      nullablePath(),
      null,
      "Folder of the contrastive labels (LV_loss.xlsx + masks); null: <data root>/LV_loss " +
        "(the generated data set writes one)",
    ),
  }, "Semi-supervised training, used when train.labeled_fraction < 1"),
  eval: section({
    split: field(z.enum(["test", "val"]), "test", "Split the final evaluation scores"),
    overlays: field(nonNegInt(), 16, "Overlay images in report.md", "images"),
    save_predictions: field(bool(), true, "Write the prediction PNGs of the evaluated split"),
  }, "Final evaluation with the best checkpoint"),
};

/**
 * The resolved experiment: every key present, defaults filled, snake_case as in YAML. The
 * README's configuration table (from `formatSchemaKeys`) describes each key in full.
 */
export interface ExperimentConfig {
  /** Experiment name; the run folder is runs/<name>/<variant>/<hash>/. */
  name: string;
  /** Variant name, the second level of the run folder. */
  variant: string;
  /** Free text shown in reports. */
  description: string;
  /** Seed of initialisation, shuffling and augmentation. */
  seed: number;
  /** Where to run: `auto` takes webgpu on a hardware adapter and cpu on a software one. */
  backend: "auto" | "webgpu" | "cpu";
  /** The data set and where it lives. */
  data: DataConfig;
  /** How the sample descriptions become text features. */
  text: TextConfig;
  /** The network: `name` picks the model, the other keys are its options. */
  model: ModelConfig;
  /** Optimiser, schedule, early stopping and checkpoints. */
  train: TrainConfig;
  /** Semi-supervised training, used when `train.labeled_fraction` < 1. */
  semi: SemiConfig;
  /** Final evaluation with the best checkpoint. */
  eval: EvalConfig;
}

/** The `data` section of a resolved experiment. */
export interface DataConfig {
  /** `synth` is generated (no download); the others are read in the LViT folder layout. */
  dataset: "synth" | "qata" | "mosmed" | "monuseg";
  /** Folder of the data set; null: LVIT_DATA for the real sets, under `cache_dir` for synth. */
  root: string | null;
  /** Folder for decoded tensors, text features and generated data. */
  cache_dir: string;
  /** Whether the train split is augmented as the reference's RandomGenerator does. */
  augment: boolean;
  /** The generated data set (used when `dataset` is `synth`). */
  synth: {
    /** Seed of the generated images. */
    seed: number;
    /** Generated train images. */
    train: number;
    /** Generated validation images. */
    val: number;
    /** Generated test images. */
    test: number;
  };
}

/** The `text` section of a resolved experiment. */
export interface TextConfig {
  /** `builtin` needs no download; `bert` runs a BERT-base model (`model` or `model_dir`). */
  encoder: "builtin" | "bert";
  /** Folder of the BERT model (encoder `bert`: this or `model`). */
  model_dir: string | null;
  /** BERT hub id or local folder, instead of `model_dir`; absent when never set. */
  model?: string | null;
}

/** The `train` section of a resolved experiment. */
export interface TrainConfig {
  /** Training epochs at most. */
  epochs: number;
  /** Training batch size, in images. */
  batch: number;
  /** Initial learning rate of Adam. */
  lr: number;
  /** Adam's beta1 and beta2. */
  betas: [number, number];
  /** Adam's epsilon. */
  eps: number;
  /** L2 weight decay added to the gradients. */
  weight_decay: number;
  /** Learning-rate schedule. */
  schedule: {
    /** Cosine annealing with warm restarts (stepped once per epoch), or a constant rate. */
    kind: "cosine-restarts" | "constant";
    /** Length of the first cosine cycle, in epochs. */
    t0: number;
    /** Factor by which each cycle is longer than the previous. */
    t_mult: number;
    /** Learning rate at the bottom of each cycle. */
    eta_min: number;
  };
  /** Stop after this many epochs without a new best validation Dice. */
  patience: number;
  /** First 1-based epoch whose validation Dice may count as best. */
  min_save_epoch: number;
  /** Validate every this many epochs. */
  eval_every: number;
  /** Loss weights: `dice` * Dice loss + `bce` * BCE. */
  loss: {
    /** Weight of the Dice loss. */
    dice: number;
    /** Weight of the binary cross-entropy. */
    bce: number;
  };
  /** Also write checkpoints/last.safetensors every this many steps; 0: at epoch ends only. */
  checkpoint_every: number;
  /** Cap on the training steps of one epoch; null: the whole train split. */
  max_steps_per_epoch: number | null;
  /** Fraction of the train split used with its masks; below 1 the rest is semi-supervised. */
  labeled_fraction: number;
  /** Stop at the first epoch end this long after start (a duration or seconds); null: none. */
  time_limit: string | number | null;
}

/** The `semi` section of a resolved experiment. */
export interface SemiConfig {
  /** Epochs on the labeled subset alone before pseudo labels are made. */
  prototype_epochs: number;
  /** Exponential Pseudo-label Iteration; false: pseudo labels are the latest prediction. */
  epi: boolean;
  /** EPI's smoothing factor beta. */
  epi_beta: number;
  /** Train on pseudo labels thresholded at 0.5 instead of the smoothed probabilities. */
  binarize: boolean;
  /** Add the language-vision loss on unlabeled images. */
  lv_loss: boolean;
  /** Weight of the LV loss. */
  lv_weight: number;
  /** Folder of the contrastive labels; null: <data root>/LV_loss. */
  contrastive_dir: string | null;
}

/** The `eval` section of a resolved experiment. */
export interface EvalConfig {
  /** Split the final evaluation scores. */
  split: "test" | "val";
  /** Overlay images in report.md. */
  overlays: number;
  /** Write the prediction PNGs of the evaluated split. */
  save_predictions: boolean;
}

// Compile-time check that `ExperimentConfig` and what the schema below resolves to are
// assignable both ways: a key retyped, removed, or added as required on one side fails to check.
type Resolved = z.output<z.ZodObject<typeof Shape>>;
type Same<A extends B, B extends C, C = A> = [A, B, C];
type ConfigMatchesSchema = Same<Resolved, ExperimentConfig>;

/**
 * The whole experiment schema. Strict at every level: an unknown key is an error. Parse with
 * `safeParse` to get every issue with its key path; lib/config/load.ts adds the positions.
 */
export const ExperimentSchema: z.ZodType<ExperimentConfig> = z.strictObject(Shape).superRefine(
  (cfg, ctx) => {
    const bertModel = cfg.text.model ?? null;
    if (cfg.text.encoder === "bert" && cfg.text.model_dir === null && bertModel === null) {
      ctx.addIssue({
        code: "custom",
        path: ["text", "encoder"],
        message: "text.encoder 'bert' needs text.model (a hub id such as " +
          "Xenova/bert-base-uncased, or a folder) or text.model_dir (the folder of a BERT-base " +
          "model); set one, or use encoder 'builtin'",
      });
    }
    if (cfg.text.model_dir !== null && bertModel !== null) {
      ctx.addIssue({
        code: "custom",
        path: ["text", "model"],
        message: "set text.model or text.model_dir, not both",
      });
    }
    const m = cfg.model;
    // Settings a key's own check rejected (zod runs refinements after failed checks too) were
    // reported already; the model-wide checks below need them valid.
    if (!ModelSchema.safeParse(m).success) return;
    if (isLViT(m.name)) {
      try {
        checkLViTOptions(modelOptions(cfg).options as unknown as LViTOptions);
      } catch (e) {
        const msg = (e as Error).message.replace(/^lvit: /, "");
        // Report at the first key the message names; load.ts falls back to the others.
        const keys = ["image_size", ...MODEL_KEYS[m.name]]
          .map((k) => [k, msg.search(new RegExp(`\\b${k}\\b`))] as const)
          .filter(([, i]) => i >= 0)
          .sort((a, b) => a[1] - b[1])
          .map(([k]) => ["model", k]);
        ctx.addIssue({
          code: "custom",
          path: keys[0] ?? ["model", "name"],
          message: `invalid '${(keys[0] ?? ["model", "name"]).join(".")}' for ${m.name}: ${msg}`,
          params: { alt: keys.slice(1) },
        });
      }
    } else {
      const levels = m.name === "unet" ? 5 : (m as UNetSmallModelConfig).widths.length;
      const div = 2 ** (levels - 1);
      if (m.image_size % div !== 0) {
        ctx.addIssue({
          code: "custom",
          path: ["model", "image_size"],
          message: `${m.name} with ${levels} levels needs model.image_size divisible by ${div} ` +
            `(got ${m.image_size})`,
          params: { alt: [["model", "widths"]] },
        });
      }
    }
  },
);

/**
 * The model of a resolved experiment: its registry name and its camelCase options (every key
 * of the model section, plus `imageSize`), ready for `buildModel(name, options)`.
 */
export function modelOptions(
  cfg: Pick<ExperimentConfig, "model">,
): { name: ModelName; options: Record<string, unknown> } {
  const m = cfg.model as unknown as Record<string, unknown>;
  const name = m.name as ModelName;
  const options: Record<string, unknown> = { imageSize: m.image_size };
  for (const key of MODEL_KEYS[name]) {
    if (Object.hasOwn(m, key)) options[MODEL_KEY_SPECS[key].option] = m[key];
  }
  return { name, options };
}

// ---------------------------------------------------------------------------------------------
// Introspection, for error messages and the documentation.

/** Strips default, prefault and optional wrappers. */
export function unwrapSchema(s: z.ZodType): z.ZodType {
  while (
    s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional
  ) s = s.unwrap() as z.ZodType;
  return s;
}

/** What a schema expects, in words ("a positive integer", `one of "a", "b"`, "a mapping"). */
export function expectsOf(schema: z.ZodType): string {
  let s: z.ZodType = schema;
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

/**
 * The schema at a key path (list indices are numbers) of the raw configuration `raw`, which
 * picks the model section's variant; undefined where the path leaves the schema.
 */
export function schemaAt(p: readonly (string | number)[], raw: unknown): z.ZodType | undefined {
  let s: z.ZodType = ExperimentSchema;
  let v: unknown = raw;
  for (const seg of p) {
    s = pickVariant(unwrapSchema(s), v);
    if (s instanceof z.ZodNullable) s = unwrapSchema(s.unwrap() as z.ZodType);
    if (s instanceof z.ZodObject) {
      const shape = s.shape as Record<string, z.ZodType>;
      if (typeof seg !== "string" || !Object.hasOwn(shape, seg)) return undefined;
      s = shape[seg];
    } else if (s instanceof z.ZodArray && typeof seg === "number") {
      s = s.element as z.ZodType;
    } else if (s instanceof z.ZodTuple && typeof seg === "number") {
      const items = s.def.items as z.ZodType[];
      if (seg >= items.length) return undefined;
      s = items[seg];
    } else return undefined;
    v = v !== null && typeof v === "object" ? (v as Record<string, unknown>)[seg] : undefined;
  }
  return pickVariant(s, v);
}

/** The model variant a raw model section selects (the schema itself when it is no union). */
function pickVariant(s: z.ZodType, v: unknown): z.ZodType {
  const u = unwrapSchema(s);
  if (!(u instanceof z.ZodDiscriminatedUnion)) return s;
  const n = v !== null && typeof v === "object" ? (v as Record<string, unknown>).name : undefined;
  const opts = u.options as unknown as z.ZodObject<z.core.$ZodLooseShape>[];
  return opts.find((o) => (o.shape.name as z.ZodLiteral).values.has(n as never)) ?? s;
}

/** The keys a mapping schema allows (after unwrapping), else undefined. */
export function keysOf(schema: z.ZodType | undefined): string[] | undefined {
  const s = schema && unwrapSchema(schema);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : undefined;
}

/** One key of the experiment schema, for the documentation. */
export interface SchemaKey {
  /** Dotted key path, e.g. `train.schedule.t0`. */
  path: string;
  /** What it takes, in words ("a positive integer", `one of "auto", "webgpu", "cpu"`). */
  expects: string;
  /** Whether an experiment must set it (no default). */
  required: boolean;
  /** The default (for model keys: the first listed model's). */
  default?: unknown;
  /** Model keys: the default per model where the models differ. */
  defaultByModel?: Partial<Record<ModelName, unknown>>;
  /** What the key does (the schema's description). */
  description: string;
  /** The unit of a numeric key ("epochs", "pixels"...), when it has one. */
  unit?: string;
  /** Model keys: the models that accept it. */
  models?: ModelName[];
}

/** Every key path of the schema (sections included), in schema order. */
export function schemaKeys(): SchemaKey[] {
  const rows = new Map<string, SchemaKey>();
  const visit = (s: z.ZodType, p: string, model?: ModelName) => {
    const description = s.description ?? "";
    const unit = UNITS.get(s);
    const hasDefault = s instanceof z.ZodDefault;
    const def = hasDefault ? structuredClone((s as z.ZodDefault).def.defaultValue) : undefined;
    const optional = hasDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional;
    const inner = unwrapSchema(s);
    if (p) {
      const row = rows.get(p);
      if (!row) {
        const r: SchemaKey = { path: p, expects: expectsOf(s), required: !optional, description };
        if (hasDefault) r.default = def;
        if (unit) r.unit = unit;
        if (model) r.models = [model];
        if (model && hasDefault) r.defaultByModel = { [model]: def };
        rows.set(p, r);
      } else if (model) {
        row.models!.push(model);
        if (hasDefault) row.defaultByModel![model] = def;
        if (p === "model.name") {
          row.expects = `one of ${row.models!.map((m) => JSON.stringify(m)).join(", ")}`;
        }
      }
    }
    if (inner instanceof z.ZodObject) {
      for (const [k, v] of Object.entries(inner.shape)) {
        visit(v as z.ZodType, p ? `${p}.${k}` : k, model);
      }
    } else if (inner instanceof z.ZodDiscriminatedUnion) {
      const opts = inner.options as unknown as z.ZodObject<z.core.$ZodLooseShape>[];
      opts.forEach((o, i) => {
        for (const [k, v] of Object.entries(o.shape)) {
          visit(v as z.ZodType, `${p}.${k}`, MODEL_NAMES[i]);
        }
      });
    }
  };
  visit(ExperimentSchema, "");
  for (const r of rows.values()) {
    if (!r.defaultByModel) continue;
    const vals = Object.values(r.defaultByModel).map((v) => JSON.stringify(v));
    if (new Set(vals).size <= 1) delete r.defaultByModel;
  }
  const nameRow = rows.get("model.name");
  if (nameRow) {
    nameRow.description = "The model: " +
      MODEL_NAMES.map((n) => `${n} (${MODELS[n].description})`).join("; ");
  }
  return [...rows.values()];
}

/** The schema as a Markdown table (key, type, default, description). */
export function formatSchemaKeys(keys: SchemaKey[] = schemaKeys()): string {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  const show = (r: SchemaKey) => {
    if (r.required) return "(required)";
    if (r.defaultByModel) {
      return Object.entries(r.defaultByModel).map(([m, v]) => `${m}: ${JSON.stringify(v)}`)
        .join("; ");
    }
    return r.default === undefined ? "" : JSON.stringify(r.default);
  };
  const lines = [
    "| key | takes | default | description |",
    "| --- | --- | --- | --- |",
    ...keys.map((r) =>
      `| \`${r.path}\` | ${cell(r.expects)} | ${cell(show(r))} | ${cell(r.description)}` +
      `${r.models && r.path !== "model.name" ? ` (models: ${r.models.join(", ")})` : ""} |`
    ),
  ];
  return lines.join("\n");
}
