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
 */
import type { ModelFn } from "./count.ts";
import { lvit, LVIT_DEFAULTS, type LViTOptions } from "./lvit.ts";
import { UNET_REF_DEFAULTS, unetRef, type UNetRefOptions } from "./unet_ref.ts";
import { unet, type UNetOptions } from "./unet.ts";

export type { ModelFn } from "./count.ts";
export type { Ctx } from "../nn/layers.ts";
export type { Attrs, Graph, InitSpec, Shape, Tensor, TensorKind } from "../graph/mod.ts";
export type { LViTOptions, TextSubstitute } from "./lvit.ts";
export type { UNetRefOptions } from "./unet_ref.ts";
export type { UNetOptions } from "./unet.ts";

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
}

/** The name of a registered model (`lvit-t`, `unet`...). */
export type ModelName = keyof ModelOptionsByName;

/** A registered model: its defaults, whether it reads text, and its builder. */
export interface ModelEntry<N extends ModelName = ModelName> {
  /** The registry name. */
  name: N;
  /** One line for help texts and the schema documentation. */
  description: string;
  /** The full default options; `buildModel` merges the caller's over them. */
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
): ModelEntry<N> => ({
  name,
  description,
  defaults: { ...LVIT_DEFAULTS, ...over },
  usesText: over.text ?? LVIT_DEFAULTS.text,
  build: (o: LViTOptions) => (c, x) => lvit(c, x, o),
});

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
    defaults: UNET_REF_DEFAULTS,
    usesText: false,
    build: (o) => (c, x) => unetRef(c, x, o),
  },
  "unet-small": {
    name: "unet-small",
    description: "the engine milestone's small U-Net (double CBR per level)",
    defaults: { widths: [16, 32, 64, 128], outChannels: 1 },
    usesText: false,
    build: (o) => (c, x) => unet(c, x, o),
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
