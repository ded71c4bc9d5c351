/**
 * Models by name. Each entry turns typed options into a `ModelFn` (images -> probabilities);
 * models that read text create the TEXT_INPUT themselves.
 *
 * - `lvit-t`: the reference LViT (lvit-reference.md 1), trained with text.
 * - `lvit-tw`: the same without text. The paper's substitution is unpublished; by default the
 *   CTBN3(text) addition is dropped (text_substitute "none"), "image" feeds CTBN3 with chunk
 *   means of the level's own patch tokens instead (lvit.ts).
 * - `lvit-l` / `lvit-lw`: NOT defined by any accessible source (lvit-reference.md 2). Here they
 *   are a documented larger setting of our own: four transformer blocks per ViT object (depth
 *   4) instead of one, MLP ratio 4, everything else as LViT-T / LViT-TW.
 * - `unet`: the reference's nets/UNet.py baseline (unet_ref.ts, 14,751,873 parameters).
 * - `unet-small`: the engine milestone's U-Net (unet.ts) with configurable widths.
 * - `unetpp`: UNet++ as smp v0.2.0 with a ResNet-34 encoder trained from scratch (unetpp.ts,
 *   26,078,609 parameters; baselines-reference.md 3).
 * - `uctransnet`: UCTransNet (uctransnet.ts, baselines-reference.md 1; 66,430,657 parameters).
 * - `gtunet`: GT U-Net (gtunet.ts, baselines-reference.md 2; 26,216,289 parameters), logits
 *   + a sigmoid head, image sides multiples of 64 (run at 256).
 *
 * Each model's options (YAML key, type, default, description, cross-option checks) are declared
 * once in its own file (LVIT_OPTIONS, UNET_REF_OPTIONS, UNET_OPTIONS); an entry takes them,
 * with its variant's defaults, and the experiment schema, README table and `inspect` read them
 * from here.
 */
import type { ModelFn } from "./count.ts";
import { lvit, LVIT_OPTIONS, type LViTOptions } from "./lvit.ts";
import { UNET_REF_OPTIONS, unetRef, type UNetRefOptions } from "./unet_ref.ts";
import { unet, UNET_OPTIONS, type UNetOptions } from "./unet.ts";
import { gtunet, GTUNET_OPTIONS, type GTUNetOptions } from "./gtunet.ts";
import { unetpp, UNETPP_OPTIONS, type UNetPPOptions } from "./unetpp.ts";
import { uctransnet, UCTRANSNET_OPTIONS, type UCTransNetOptions } from "./uctransnet.ts";
import { type ModelOptions, withDefaults } from "./options.ts";

export type { ModelFn } from "./count.ts";
export type { Ctx } from "../nn/layers.ts";
export type { Attrs, Graph, InitSpec, Shape, Tensor, TensorKind } from "../graph/mod.ts";
export type { LViTOptions, TextSubstitute } from "./lvit.ts";
export type { UNetRefOptions } from "./unet_ref.ts";
export type { UNetOptions } from "./unet.ts";
export type { GTUNetOptions } from "./gtunet.ts";
export type { UNetPPOptions } from "./unetpp.ts";
export type { UCTransNetOptions } from "./uctransnet.ts";
export type {
  ModelCheck,
  ModelOption,
  ModelOptions,
  OptionCheck,
  OptionProblem,
  OptionSpec,
  OptionSpecs,
  ValueSchema,
} from "./options.ts";

/** Options of every registered model, by name. */
export interface ModelOptionsByName {
  /** LViT-T: the reference model, with text. */
  "lvit-t": LViTOptions;
  /** LViT-TW: LViT-T without text. */
  "lvit-tw": LViTOptions;
  /** LViT-L (our definition): depth 4 per ViT object, MLP ratio 4, with text. */
  "lvit-l": LViTOptions;
  /** LViT-LW: LViT-L without text. */
  "lvit-lw": LViTOptions;
  /** The reference U-Net baseline (nets/UNet.py). */
  unet: UNetRefOptions;
  /** The engine milestone's small U-Net with configurable widths. */
  "unet-small": UNetOptions;
  /** UNet++ (smp v0.2.0, ResNet-34 encoder). */
  unetpp: UNetPPOptions;
  /** UCTransNet (channel transformer + CCA skips), baselines-reference.md 1. */
  uctransnet: UCTransNetOptions;
  /** GT U-Net (BoT group-transformer blocks), baselines-reference.md 2. */
  gtunet: GTUNetOptions;
}

/** The name of a registered model (`lvit-t`, `unet`...). */
export type ModelName = keyof ModelOptionsByName;

/**
 * A model as the experiment schema sees it: its name, one line of description and its option
 * declaration (lib/models/options.ts). Every registry entry is one; tests declare others.
 */
export interface ModelDeclaration {
  /** The name an experiment's `model.name` gives. */
  readonly name: string;
  /** One line for help texts and the schema documentation. */
  readonly description: string;
  /** Its options: YAML keys, types, defaults, descriptions, checks. */
  readonly options: ModelOptions<object>;
}

/** Model declarations by name, in the order documentation lists them. */
export type ModelDeclarations = Readonly<Record<string, ModelDeclaration>>;

/** A registered model: its options, whether it reads text, and its builder. */
export interface ModelEntry<N extends ModelName = ModelName> {
  /** The registry name. */
  name: N;
  /** One line for help texts and the schema documentation. */
  description: string;
  /** Its option declaration, with this model's defaults. */
  options: ModelOptions<ModelOptionsByName[N]>;
  /** The full default options (`options.defaults`); `buildModel` merges the caller's over them. */
  defaults: ModelOptionsByName[N];
  /** Whether the default configuration reads the TEXT_INPUT. */
  usesText: boolean;
  /** The model function for complete options. */
  build(opts: ModelOptionsByName[N]): ModelFn;
}

type LViTName = "lvit-t" | "lvit-tw" | "lvit-l" | "lvit-lw";

const lvitEntry = <N extends LViTName>(
  name: N,
  description: string,
  over: Partial<LViTOptions>,
): ModelEntry<N> => {
  const options = withDefaults(LVIT_OPTIONS, over);
  return {
    name,
    description,
    options,
    defaults: options.defaults,
    usesText: options.defaults.text,
    build: (o: LViTOptions) => (c, x) => lvit(c, x, o),
  };
};

/** The registry. */
export const MODELS: { [N in ModelName]: ModelEntry<N> } = {
  "lvit-t": lvitEntry("lvit-t", "LViT-T, the reference model with text", {}),
  "lvit-tw": lvitEntry("lvit-tw", "LViT-TW, without text (CTBN3 addition dropped)", {
    text: false,
  }),
  "lvit-l": lvitEntry("lvit-l", "LViT-L (our definition): depth 4 per ViT, with text", {
    depth: 4,
    mlpRatio: 4,
  }),
  "lvit-lw": lvitEntry("lvit-lw", "LViT-LW (our definition): depth 4 per ViT, no text", {
    depth: 4,
    mlpRatio: 4,
    text: false,
  }),
  unet: {
    name: "unet",
    description: "U-Net baseline of the reference (nets/UNet.py)",
    options: UNET_REF_OPTIONS,
    defaults: UNET_REF_OPTIONS.defaults,
    usesText: false,
    build: (o) => (c, x) => unetRef(c, x, o),
  },
  "unet-small": {
    name: "unet-small",
    description: "the engine milestone's small U-Net (double CBR per level)",
    options: UNET_OPTIONS,
    defaults: UNET_OPTIONS.defaults,
    usesText: false,
    build: (o) => (c, x) => unet(c, x, o),
  },
  unetpp: {
    name: "unetpp",
    description: "UNet++ (smp v0.2.0, ResNet-34 encoder from scratch)",
    options: UNETPP_OPTIONS,
    defaults: UNETPP_OPTIONS.defaults,
    usesText: false,
    build: (o) => (c, x) => unetpp(c, x, o),
  },
  uctransnet: {
    name: "uctransnet",
    description: "UCTransNet (channel transformer skips with channel cross-attention)",
    options: UCTRANSNET_OPTIONS,
    defaults: UCTRANSNET_OPTIONS.defaults,
    usesText: false,
    build: (o) => (c, x) => uctransnet(c, x, o),
  },
  gtunet: {
    name: "gtunet",
    description: "GT U-Net (BoT group-transformer blocks, 4x4 windows; sides multiples of 64)",
    options: GTUNET_OPTIONS,
    defaults: GTUNET_OPTIONS.defaults,
    usesText: false,
    build: (o) => (c, x) => gtunet(c, x, o),
  },
};

/** Every registered model name, in registry order. */
export const MODEL_NAMES: ModelName[] = Object.keys(MODELS) as ModelName[];

/** Builds a registered model with `opts` over its defaults. */
export function buildModel<N extends ModelName>(
  name: N,
  opts: Partial<ModelOptionsByName[N]> = {},
): ModelFn {
  const e = MODELS[name] as ModelEntry<N>;
  if (!e) throw new RangeError(`unknown model '${name}'; known: ${MODEL_NAMES.join(", ")}`);
  return e.build({ ...e.defaults, ...opts });
}
