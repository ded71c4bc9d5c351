/**
 * The experiment schema (zod): every key of an experiment file with its type, default, unit and
 * description. The resolved configuration keeps YAML's snake_case; `modelOptions` maps the
 * `model` section onto the camelCase options of lib/models/*.
 *
 * Defaults are the reference training recipe (lvit-reference.md 5). The `model` section is
 * derived from the models' option declarations (lib/models/options.ts, declared in each model's
 * file and collected by lib/models/registry.ts): one strict mapping per model, its keys, types,
 * defaults, descriptions and cross-key checks, none of which is repeated here.
 * `experimentSchema(models)` builds the schema for any set of declarations (tests add models);
 * `ExperimentSchema` is the registry's. Besides the per-key checks the schema checks what spans
 * keys: text.encoder "bert" needs text.model or text.model_dir, and the model's declared checks,
 * each reported at the YAML key its declaration blames.
 *
 * Positions (file:line:col) are not the schema's business: lib/config/load.ts maps each issue's
 * key path back to the YAML node that set it.
 */
import { AUGMENT_DRAW_MODES, type AugmentDrawMode } from "../data/augment.ts";
import { REFERENCE_WORKERS } from "../data/reference_draws.ts";
import { z } from "../deps.ts";
import {
  type ModelDeclaration,
  type ModelDeclarations,
  type ModelName,
  MODELS,
} from "../models/registry.ts";
import { optionProblems, optionsFromKeys } from "../models/options.ts";
import { DURATION_PHRASE, parseDuration } from "./duration.ts";
import {
  bool,
  expects,
  expectsOf,
  nonNegInt,
  nonNegNum,
  nullablePath,
  path,
  phraseOf,
  posInt,
  posNum,
  rate,
  text,
  unwrapSchema,
} from "./leaf.ts";

export { choicesOf, expectsOf, unwrapSchema } from "./leaf.ts";

// ---------------------------------------------------------------------------------------------
// Leaf types (lib/config/leaf.ts), each with the phrase error messages use.

/** Units of the fields that have one, keyed by the outermost (described) schema. */
const UNITS = new WeakMap<object, string>();

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
  const p = phraseOf(s);
  return p ? expects(d, p) : d;
}

/** An optional section: left out, it resolves to all its defaults. */
function section<S extends z.core.$ZodLooseShape>(shape: S, doc: string) {
  return z.strictObject(shape).prefault({} as never).describe(doc);
}

// ---------------------------------------------------------------------------------------------
// The model section: one strict mapping per declared model, chosen by `name`.

/** The registry names of the LViT variants (W: without text). */
export type LViTName = "lvit-t" | "lvit-tw" | "lvit-l" | "lvit-lw";

/**
 * The resolved model section: `name`, `image_size` (every model declares it), `init_from` when
 * set, and the model's other options by YAML key, each with its declared default filled in.
 * Their types, ranges and meanings are the model's declaration (`MODELS[name].options`, the
 * README's key table); `modelOptions` turns the section into the model's typed options.
 */
export interface ModelConfig {
  /** The model's name: a registered one (MODEL_NAMES), unless resolved with other models. */
  name: string;
  /** Square image side (the model's declaration says which sides it takes). */
  image_size: number;
  /** A checkpoint to initialise from (relative to the experiment file that set it). */
  init_from?: string | null;
  /** Prepended to every name of the init_from checkpoint before matching (`encoder.`). */
  init_prefix?: string | null;
  /** The model's other options, by YAML key. */
  [key: string]: unknown;
}

/** The model section of an LViT variant (resolved). */
export type LViTModelConfig = ModelConfig & { name: LViTName };
/** The model section of the reference U-Net baseline (resolved). */
export type UNetModelConfig = ModelConfig & { name: "unet" };
/** The model section of the engine milestone's small U-Net (resolved). */
export type UNetSmallModelConfig = ModelConfig & { name: "unet-small" };

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

/**
 * `model.init_prefix`: optional like init_from (no config hash changes). It lets a checkpoint of
 * a sub-network initialise that part of a model, e.g. torchvision's ResNet-34 (`conv1.weight`,
 * `layer1.0.bn1.weight`, ...) the `encoder.*` of unetpp, the ImageNet initialisation smp's
 * UNet++ defaults to (baselines-reference.md 3.6).
 */
const initPrefix = () =>
  expects(
    z.string().min(1).max(200).regex(/^[A-Za-z0-9_.]+$/).nullable(),
    "a state_dict name prefix (letters, digits, '_' and '.') or null",
  ).optional().describe(
    "Prepended to every tensor name of the init_from checkpoint before matching, so that a " +
      "sub-network's checkpoint initialises that part of the model: 'encoder.' loads a " +
      "torchvision ResNet-34 .pth into unetpp's encoder (its fc.* is reported unused). Needs " +
      "init_from; null: names as they are",
  );

/** One model's mapping: `name`, its declared options in declaration order, `init_from`. */
function modelSchema(m: ModelDeclaration) {
  const shape: Record<string, z.ZodType> = {
    name: z.literal(m.name).describe(`${m.name}: ${m.description}`),
  };
  for (const o of m.options.list) {
    if (o.key === "name" || o.key === "init_from" || o.key === "init_prefix") {
      throw new Error(`model ${m.name}: option key '${o.key}' is reserved`);
    }
    // Declarations hold zod schemas, typed structurally (leaf.ts ValueSchema).
    shape[o.key] = field(o.schema as unknown as z.ZodType, o.default as never, o.doc, o.unit);
  }
  // The data reader, the graphs and the batch buffers are all sized by model.image_size.
  if (!shape.image_size) throw new Error(`model ${m.name} declares no image_size option`);
  shape.init_from = initFrom();
  shape.init_prefix = initPrefix();
  return z.strictObject(shape);
}

// ---------------------------------------------------------------------------------------------
// The experiment.

/** Data sets an experiment can name (the real ones in the LViT folder layout). */
export const DATASETS = ["synth", "qata", "mosmed", "monuseg"] as const;
/** Backend requests (the same as lib/backends/select.ts BACKENDS). */
export const BACKEND_CHOICES = ["auto", "webgpu", "cpu"] as const;

/** The keys of an experiment, with `model` as given (the section of some model declarations). */
const shapeWith = (model: z.ZodType<ModelConfig>) => ({
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
    // Optional (absent: philox), so that configs without it keep their hash.
    augment_draws: expects(
      z.enum(AUGMENT_DRAW_MODES),
      `one of ${AUGMENT_DRAW_MODES.map((m) => `"${m}"`).join(", ")}`,
    ).optional().describe(
      "How augmentations are drawn: philox (default), afresh per epoch and image; " +
        "reference-loader, as the reference's DataLoader did under its torch 1.8 (8 workers " +
        "re-seeded every epoch: each batch position gets the same transform every epoch; " +
        "seeded by seed, 666 in the reference)",
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
  model,
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
});

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
  /** How augmentations are drawn (absent: philox); see lib/data/reference_draws.ts. */
  augment_draws?: AugmentDrawMode;
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
type Resolved = z.output<z.ZodObject<ReturnType<typeof shapeWith>>>;
type Same<A extends B, B extends C, C = A> = [A, B, C];
type ConfigMatchesSchema = Same<Resolved, ExperimentConfig>;

/**
 * The experiment schema for the models `models` declare (the registry's: {@link
 * ExperimentSchema}). Strict at every level: an unknown key is an error. Parse with `safeParse`
 * to get every issue with its key path; lib/config/load.ts adds the positions. A model's
 * declared checks are reported at the YAML key each blames (`model.<key>`), with the keys that
 * locate it when that one was left at its default (`params.alt`).
 */
export function experimentSchema(models: ModelDeclarations): z.ZodType<ExperimentConfig> {
  const decls = Object.values(models);
  if (decls.length === 0) throw new Error("experimentSchema: no models");
  const variants = new Map(decls.map((m) => [m.name, modelSchema(m)]));
  const model = z.discriminatedUnion(
    "name",
    [...variants.values()] as unknown as [
      z.ZodObject<z.core.$ZodLooseShape>,
      ...z.ZodObject<z.core.$ZodLooseShape>[],
    ],
  ).describe(
    "The network: name picks the model, the other keys are its options (defaults: the model " +
      "registry's)",
  ) as unknown as z.ZodType<ModelConfig>;
  return z.strictObject(shapeWith(model)).superRefine((cfg, ctx) => {
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
    if (cfg.data.augment_draws === "reference-loader") {
      // The replay is of the reference's supervised loader: nothing to replay without
      // augmentation or in semi-supervised epochs (the reference released no such loader).
      const why = !cfg.data.augment
        ? "data.augment is false"
        : cfg.train.labeled_fraction < 1
        ? "train.labeled_fraction < 1 (the reference has no semi-supervised loader to replay)"
        : cfg.seed + REFERENCE_WORKERS > 0xffffffff
        ? `seed ${cfg.seed} + ${REFERENCE_WORKERS} workers exceeds numpy's 32-bit seeds`
        : null;
      if (why) {
        ctx.addIssue({
          code: "custom",
          path: ["data", "augment_draws"],
          message: `data.augment_draws 'reference-loader' cannot be used: ${why}; remove it ` +
            "or use 'philox'",
        });
      }
    }
    const m = cfg.model as Record<string, unknown>;
    if (typeof m?.init_prefix === "string" && typeof m.init_from !== "string") {
      ctx.addIssue({
        code: "custom",
        path: ["model", "init_prefix"],
        message: "model.init_prefix needs model.init_from (the checkpoint whose names it " +
          "prefixes); set init_from, or remove init_prefix",
      });
    }
    const name = String(m?.name);
    const decl = Object.hasOwn(models, name) ? models[name] : undefined;
    // Settings a key's own check rejected (zod runs refinements after failed checks too) were
    // reported already; the model-wide checks below need them valid.
    if (!decl || !variants.get(name)?.safeParse(m).success) return;
    for (const p of optionProblems(decl.options, optionsFromKeys(decl.options, m))) {
      const [key, ...alt] = p.keys;
      ctx.addIssue({
        code: "custom",
        path: ["model", key],
        message: `invalid 'model.${key}' for ${name}: ${p.message}`,
        params: { alt: alt.map((k) => ["model", k]) },
      });
    }
  });
}

/** The experiment schema of the registered models (lib/models/registry.ts). */
export const ExperimentSchema: z.ZodType<ExperimentConfig> = experimentSchema(MODELS);

/** Schemas built for model declarations other than the registry's, built once per object. */
const SCHEMAS = new WeakMap<ModelDeclarations, z.ZodType<ExperimentConfig>>([
  [MODELS, ExperimentSchema],
]);

/** The experiment schema of `models` ({@link ExperimentSchema} for the registry), cached. */
export function schemaFor(models: ModelDeclarations): z.ZodType<ExperimentConfig> {
  let s = SCHEMAS.get(models);
  if (!s) SCHEMAS.set(models, s = experimentSchema(models));
  return s;
}

/**
 * The model of a resolved experiment: its registry name and its camelCase options (every key
 * of the model section that its declaration names, `image_size` as `imageSize` included), ready
 * for `buildModel(name, options)`. `models`: the declarations the experiment was resolved with.
 */
export function modelOptions(
  cfg: Pick<ExperimentConfig, "model">,
  models: ModelDeclarations = MODELS,
): { name: ModelName; options: Record<string, unknown> } {
  const m = cfg.model as Record<string, unknown>;
  const name = m.name as ModelName;
  if (!Object.hasOwn(models, name)) throw new RangeError(`unknown model '${name}'`);
  return { name, options: optionsFromKeys(models[name].options, m) };
}

/** One option of a resolved model section, for `inspect`'s listing. */
export interface ModelOptionRow {
  /** The YAML key. */
  key: string;
  /** The camelCase option it sets. */
  option: string;
  /** The resolved value. */
  value: unknown;
  /** The model's default. */
  default: unknown;
  /** What it takes, in words. */
  expects: string;
  /** What it does, with its unit when it has one. */
  description: string;
}

/**
 * The options of a resolved model section, in declaration order: value, default, what each
 * takes and does (the model's declaration in `models`).
 */
export function modelOptionRows(
  model: Pick<ModelConfig, "name"> & Record<string, unknown>,
  models: ModelDeclarations = MODELS,
): ModelOptionRow[] {
  const name = String(model.name);
  if (!Object.hasOwn(models, name)) throw new RangeError(`unknown model '${name}'`);
  return models[name].options.list.map((o) => ({
    key: o.key,
    option: o.option,
    value: Object.hasOwn(model, o.key) ? model[o.key] : o.default,
    default: o.default,
    expects: expectsOf(o.schema),
    description: o.unit ? `${o.doc} (unit: ${o.unit})` : o.doc,
  }));
}

// ---------------------------------------------------------------------------------------------
// Introspection, for error messages and the documentation.

/**
 * The schema at a key path (list indices are numbers) of the raw configuration `raw`, which
 * picks the model section's variant; undefined where the path leaves the schema. `root`: the
 * experiment schema (`experimentSchema(models)` for other model declarations).
 */
export function schemaAt(
  p: readonly (string | number)[],
  raw: unknown,
  root: z.ZodType = ExperimentSchema,
): z.ZodType | undefined {
  let s: z.ZodType = root;
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
  /** Model keys: what it takes per model where the models differ. */
  expectsByModel?: Record<string, string>;
  /** Whether an experiment must set it (no default). */
  required: boolean;
  /** The default (for model keys: the first listed model's). */
  default?: unknown;
  /** Model keys: the default per model where the models differ. */
  defaultByModel?: Record<string, unknown>;
  /** What the key does (the schema's description; for model keys, the first listed model's). */
  description: string;
  /** Model keys: the description per model where the models differ. */
  descriptionByModel?: Record<string, string>;
  /** The unit of a numeric key ("epochs", "pixels"...), when it has one. */
  unit?: string;
  /** Model keys: the models that accept it. */
  models?: string[];
}

/**
 * Every key path of the experiment schema of `models` (default: the registry's), sections
 * included, in schema order. A model key is one row for every model that declares it.
 */
export function schemaKeys(models: ModelDeclarations = MODELS): SchemaKey[] {
  const root = schemaFor(models);
  const rows = new Map<string, SchemaKey>();
  const visit = (s: z.ZodType, p: string, model?: string) => {
    const description = s.description ?? "";
    const unit = UNITS.get(s);
    const hasDefault = s instanceof z.ZodDefault;
    const def = hasDefault ? structuredClone((s as z.ZodDefault).def.defaultValue) : undefined;
    const optional = hasDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional;
    const inner = unwrapSchema(s);
    if (p) {
      let row = rows.get(p);
      if (!row) {
        row = { path: p, expects: expectsOf(s), required: !optional, description };
        if (hasDefault) row.default = def;
        if (unit) row.unit = unit;
        if (model) {
          Object.assign(row, {
            models: [],
            expectsByModel: {},
            defaultByModel: {},
            descriptionByModel: {},
          });
        }
        rows.set(p, row);
      }
      if (model) {
        row.models!.push(model);
        row.expectsByModel![model] = expectsOf(s);
        if (hasDefault) row.defaultByModel![model] = def;
        row.descriptionByModel![model] = description;
      }
    }
    if (inner instanceof z.ZodObject) {
      for (const [k, v] of Object.entries(inner.shape)) {
        visit(v as z.ZodType, p ? `${p}.${k}` : k, model);
      }
    } else if (inner instanceof z.ZodDiscriminatedUnion) {
      const opts = inner.options as unknown as z.ZodObject<z.core.$ZodLooseShape>[];
      for (const o of opts) {
        const name = String([...(o.shape.name as z.ZodLiteral).values][0]);
        for (const [k, v] of Object.entries(o.shape)) visit(v as z.ZodType, `${p}.${k}`, name);
      }
    }
  };
  visit(root, "");
  // Per-model columns are kept only where the models differ.
  for (const r of rows.values()) {
    for (const k of ["expectsByModel", "defaultByModel", "descriptionByModel"] as const) {
      const by = r[k];
      if (by && new Set(Object.values(by).map((v) => JSON.stringify(v))).size <= 1) delete r[k];
    }
  }
  const nameRow = rows.get("model.name");
  if (nameRow) {
    nameRow.expects = `one of ${nameRow.models!.map((m) => JSON.stringify(m)).join(", ")}`;
    nameRow.description = "The model: " +
      Object.values(models).map((m) => `${m.name} (${m.description})`).join("; ");
    delete nameRow.expectsByModel;
    delete nameRow.descriptionByModel;
  }
  return [...rows.values()];
}

/** `a, b: x; c: y`: per-model values, models with the same value together, in model order. */
function byModel(values: Record<string, string>): string {
  const groups = new Map<string, string[]>();
  for (const [m, v] of Object.entries(values)) {
    const g = groups.get(v);
    if (g) g.push(m);
    else groups.set(v, [m]);
  }
  return [...groups].map(([v, ms]) => `${ms.join(", ")}: ${v}`).join("; ");
}

/** The schema as a Markdown table (key, type, default, description). */
export function formatSchemaKeys(keys: SchemaKey[] = schemaKeys()): string {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  const json = (by: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(by).map(([m, v]) => [m, JSON.stringify(v)]));
  const shown = (r: SchemaKey) => {
    if (r.required) return "(required)";
    if (r.defaultByModel) return byModel(json(r.defaultByModel));
    return r.default === undefined ? "" : JSON.stringify(r.default);
  };
  const described = (r: SchemaKey) =>
    // A per-model description names every model already.
    r.descriptionByModel ? byModel(r.descriptionByModel) : r.description +
      (r.models && r.path !== "model.name" ? ` (models: ${r.models.join(", ")})` : "");
  const lines = [
    "| key | takes | default | description |",
    "| --- | --- | --- | --- |",
    ...keys.map((r) =>
      `| \`${r.path}\` | ${cell(r.expectsByModel ? byModel(r.expectsByModel) : r.expects)} | ` +
      `${cell(shown(r))} | ${cell(described(r))} |`
    ),
  ];
  return lines.join("\n");
}
