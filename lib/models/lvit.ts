/**
 * LViT (Li et al., IEEE TMI 2023) as the official code computes it, lvit-reference.md section 1:
 * a U-Net CNN branch, a 4-level ViT branch with a down and an up path whose features return to
 * the CNN only through the skips (Reconstruct), PLAM on every decoder skip, text entering once
 * through CTBN3 at level 1, and a sigmoid head. Every module the reference registers but never
 * runs is registered here too (1.5), so the parameter names and the 541-entry state_dict match
 * the official checkpoints (1.9) while the used parameters are those that run (1.7).
 */
import { add, concat, maxpool2d, sigmoid, type Tensor, upsampleNearest2d } from "../graph/mod.ts";
import { conv2dLayer, type Ctx } from "../nn/layers.ts";
import {
  cbrBlock,
  conv1d,
  ctbn3,
  ctbnTokens,
  embed,
  type LCtx,
  plam,
  reconstruct,
  registerConv,
  registerPlam,
  registerVitRest,
  swapTC,
  tokenChunks,
  vitBlocks,
  type VitOptions,
} from "./lvit_blocks.ts";
import { z } from "../deps.ts";
import { bool, expects, int, posInt, rate } from "../config/leaf.ts";
import { checkOptions, defineOptions, type ModelOptions } from "./options.ts";

export { STEP_INPUT } from "./lvit_blocks.ts";

/** Name of the text input, [B, textTokens, textDim] precomputed BERT vectors. */
export const TEXT_INPUT = "text";

/** How LViT-TW (text: false) replaces the text feature (not published; lvit-reference.md 2). */
export type TextSubstitute = "none" | "image";

/** LViT settings; the defaults are the reference (LViT-T). */
export interface LViTOptions {
  /** C0: widths are C0, 2C0, 4C0, 8C0 (and 8C0 at the bottleneck). */
  baseChannels: number;
  /** Square image side; a multiple of 16, at least 64. Tokens per ViT level = (side/16)^2. */
  imageSize: number;
  /** Transformer blocks per ViT object. */
  depth: number;
  /** Attention heads per transformer block; must divide the token width. */
  heads: number;
  /** Hidden width of the ViT MLPs as a multiple of the token width. */
  mlpRatio: number;
  /** PLAM on the decoder skips; false passes the skip unchanged. */
  plam: boolean;
  /** Use the text input; false is LViT-TW. */
  text: boolean;
  /**
   * With text: false, "none" (default) drops the CTBN3 addition; "image" feeds CTBN3 with an
   * image-derived [B, textTokens, C] tensor instead: the level's patch tokens averaged over
   * textTokens contiguous raster chunks (no extra parameters).
   */
  textSubstitute: TextSubstitute;
  /** ViT level (1..4) whose patch tokens receive CTBN3(T_level); 1 is the reference. */
  textLevel: 1 | 2 | 3 | 4;
  /** Words per sample and BERT width of the text input. */
  textTokens: number;
  /** Width of one word vector of the text input (768 for BERT-base). */
  textDim: number;
  /** Dropout rate of the ViT embeddings and MLPs (reference 0.1). */
  dropout: number;
  /**
   * Apply dropout in training (default true; the step input STEP_INPUT keys the masks).
   * Evaluation never drops.
   */
  dropoutEnabled: boolean;
  /** Seed mixed into the dropout keys. */
  seed: number;
  /** Register the modules the reference defines but never runs (checkpoint compatibility). */
  registerUnused: boolean;
  /** Channels of the output mask (1: one binary mask). */
  outChannels: number;
}

/**
 * The options as an experiment's `model` section spells them, with their types, ranges,
 * defaults (the reference configuration: LViT-T at 224x224) and descriptions: the one place
 * they are declared (lib/models/options.ts derives the rest).
 */
export const LVIT_OPTIONS: ModelOptions<LViTOptions> = defineOptions<LViTOptions>({
  imageSize: {
    key: "image_size",
    schema: expects(z.number().int().min(64).multipleOf(16), "a multiple of 16, at least 64"),
    default: 224,
    doc: "Square image side ((side/16)^2 tokens per ViT level)",
    unit: "pixels",
  },
  baseChannels: {
    key: "base_channels",
    schema: posInt(),
    default: 64,
    doc: "Width C0 of the first level; deeper levels have 2, 4, 8 and 8 times C0",
    unit: "channels",
  },
  depth: { key: "depth", schema: posInt(), default: 1, doc: "Transformer blocks per ViT object" },
  heads: {
    key: "heads",
    schema: posInt(),
    default: 8,
    doc: "Attention heads per transformer block (must divide base_channels)",
  },
  mlpRatio: {
    key: "mlp_ratio",
    schema: posInt(),
    default: 4,
    doc: "Hidden width of the ViT MLPs as a multiple of the token width",
  },
  plam: {
    key: "plam",
    schema: bool(),
    default: true,
    doc: "PLAM on the decoder skips; false passes them as is",
  },
  text: {
    key: "text",
    schema: bool(),
    default: true,
    doc: "Read the text input; false is the TW variant",
  },
  textSubstitute: {
    key: "text_substitute",
    schema: z.enum(["none", "image"]),
    default: "none",
    doc: "Without text, what CTBN3 adds: none drops the addition, image adds chunk means of " +
      "the level's own patch tokens",
  },
  textLevel: {
    key: "text_level",
    schema: z.literal([1, 2, 3, 4]),
    default: 1,
    doc: "ViT level whose patch tokens receive the text (1 is the reference)",
  },
  textTokens: {
    key: "text_tokens",
    schema: posInt(),
    default: 10,
    doc: "Words per sample of the text input",
    unit: "tokens",
  },
  textDim: {
    key: "text_dim",
    schema: posInt(),
    default: 768,
    doc: "Width of one word vector of the text input (768: BERT-base)",
    unit: "features",
  },
  dropout: {
    key: "dropout",
    schema: rate(),
    default: 0.1,
    doc: "Dropout rate of the ViT embeddings and MLPs",
  },
  dropoutEnabled: {
    key: "dropout_enabled",
    schema: bool(),
    default: true,
    doc: "Apply dropout in training (evaluation never drops)",
  },
  seed: { key: "dropout_seed", schema: int(), default: 0, doc: "Seed mixed into the dropout keys" },
  registerUnused: {
    key: "register_unused",
    schema: bool(),
    default: true,
    doc: "Register the modules the reference defines but never runs (checkpoint compatibility)",
  },
  outChannels: {
    key: "out_channels",
    schema: posInt(),
    default: 1,
    doc: "Output channels (1: one binary mask)",
    unit: "channels",
  },
}, [
  {
    // The token width of level l is 2^l * base_channels, split evenly among the heads; the
    // CTBN halves it. Blamed on base_channels, the width, whichever of the two was written.
    keys: ["baseChannels", "heads"],
    test: (o) =>
      o.baseChannels % o.heads !== 0 || o.baseChannels % 2 !== 0
        ? `base_channels (${o.baseChannels}) must be even and divisible by heads (${o.heads})`
        : undefined,
  },
]);

/** The reference configuration (LViT-T at 224x224): the declared defaults. */
export const LVIT_DEFAULTS: LViTOptions = LVIT_OPTIONS.defaults;

/** Checks the options against LVIT_OPTIONS; throws a RangeError naming the YAML keys at fault. */
export function checkLViTOptions(o: LViTOptions): void {
  checkOptions("lvit", LVIT_OPTIONS, o);
}

/** Intermediate tensors of one forward, by the names of lvit-reference.md 1.4. */
export type LViTTaps = Record<string, Tensor>;

const VIT_DOWN = ["downVit", "downVit1", "downVit2", "downVit3"];
const VIT_UP = ["upVit", "upVit1", "upVit2", "upVit3"];

/**
 * Builds the forward graph on images x [B, 3, S, S]; the text input [B, textTokens, textDim]
 * (named TEXT_INPUT) is created only when the forward reads it. Returns the probabilities
 * [B, outChannels, S, S] and the intermediate tensors.
 */
export function lvitForward(
  c: Ctx,
  x: Tensor,
  opts: Partial<LViTOptions> = {},
): { out: Tensor; taps: LViTTaps } {
  const o: LViTOptions = { ...LVIT_DEFAULTS, ...opts };
  checkLViTOptions(o);
  const [B, , H, W] = x.shape;
  if (H !== o.imageSize || W !== o.imageSize) {
    throw new RangeError(`lvit: built for ${o.imageSize}x${o.imageSize}, got ${H}x${W} images`);
  }
  const lc: LCtx = {
    ...c,
    dropout: o.dropoutEnabled ? o.dropout : 0,
    seed: o.seed,
    registerUnused: o.registerUnused,
  };
  const g = c.g;
  const taps: LViTTaps = {};
  const C = [1, 2, 4, 8].map((m) => m * o.baseChannels);
  const grid = o.imageSize / 16;
  const vit = (l: number): VitOptions => ({
    dim: C[l],
    patch: 16 >> l,
    tokens: grid * grid,
    depth: o.depth,
    heads: o.heads,
    mlpRatio: o.mlpRatio,
    textTokens: o.textTokens,
  });

  // CNN encoder (computed from the un-fused features, as the reference does).
  const x1 = cbrBlock(c, "inc", x, C[0]);
  const down = (name: string, h: Tensor, cout: number) => {
    const p = g.withScope(`${name}.maxpool`, () => maxpool2d(h, 2));
    return cbrBlock(c, `${name}.nConvs.1`, cbrBlock(c, `${name}.nConvs.0`, p, cout), cout);
  };
  const x2 = down("down1", x1, C[1]);
  const x3 = down("down2", x2, C[2]);
  const x4 = down("down3", x3, C[3]);
  const x5 = down("down4", x4, C[3]);
  Object.assign(taps, { x1, x2, x3, x4, x5 });

  // Text path: four Conv1d along the words with no norm or activation, channel-first [B, C, W].
  // T1..T4 are all computed (the reference does), but only T_textLevel is consumed.
  let textCf: Tensor[] | null = null;
  if (o.text) {
    const t0 = g.input(TEXT_INPUT, [B, o.textTokens, o.textDim]);
    const t4 = conv1d(c, "text_module4", g.withScope("text_module4", () => swapTC(t0)), C[3]);
    const t3 = conv1d(c, "text_module3", t4, C[2]);
    const t2 = conv1d(c, "text_module2", t3, C[1]);
    const t1 = conv1d(c, "text_module1", t2, C[0]);
    textCf = [t1, t2, t3, t4];
  } else if (o.registerUnused) {
    // text_module{k} maps width (k === 4 ? textDim : C[k]) to C[k - 1].
    for (let k = 4; k >= 1; k--) {
      registerConv(g, `text_module${k}`, C[k - 1], k === 4 ? o.textDim : C[k], [3]);
    }
  }

  // ViT down path: level l embeds the CNN feature; level 1 returns its block output, the
  // others halve theirs with CTBN and concatenate [halved, previous level's output].
  const feats = [x1, x2, x3, x4];
  const ys: Tensor[] = [];
  for (let l = 0; l < 4; l++) {
    const name = VIT_DOWN[l];
    const vo = vit(l);
    let e = embed(lc, name, feats[l], vo);
    const textHere = l + 1 === o.textLevel;
    let ctbn3Used = false;
    if (textHere && textCf) {
      const words = g.withScope(`${name}.CTBN3`, () => swapTC(textCf![l]));
      e = g.withScope(name, () => add(e, ctbn3(c, `${name}.CTBN3`, words, vo.tokens)));
      ctbn3Used = true;
    } else if (textHere && o.textSubstitute === "image") {
      const words = g.withScope(`${name}.CTBN3`, () => tokenChunks(e, o.textTokens));
      e = g.withScope(name, () => add(e, ctbn3(c, `${name}.CTBN3`, words, vo.tokens)));
      ctbn3Used = true;
    }
    const z = vitBlocks(lc, name, e, vo);
    let y = z;
    if (l > 0) {
      const half = ctbnTokens(c, `${name}.CTBN`, z, C[l] / 2);
      y = g.withScope(name, () => concat([half, ys[l - 1]], 2));
    }
    registerVitRest(lc, name, vo, { embed: true, ctbn: l > 0, ctbn2: false, ctbn3: ctbn3Used });
    ys.push(y);
    taps[`y${l + 1}`] = y;
  }

  // ViT up path: blocks on the down outputs; levels below the top add CTBN2 of the level above.
  const us: Tensor[] = [];
  for (let l = 3; l >= 0; l--) {
    const name = VIT_UP[l];
    const vo = vit(l);
    let u = vitBlocks(lc, name, ys[l], vo);
    if (l < 3) {
      const skip = ctbnTokens(c, `${name}.CTBN2`, us[l + 1], C[l]);
      u = g.withScope(name, () => add(u, skip));
    }
    registerVitRest(lc, name, vo, { embed: false, ctbn: false, ctbn2: l < 3, ctbn3: false });
    us[l] = u;
    taps[`u${l + 1}`] = u;
  }

  // Fuse the ViT branch into the CNN skips.
  const fused = feats.map((f, l) => {
    const r = reconstruct(c, `reconstruct${l + 1}`, us[l], 16 >> l);
    const s = g.withScope(`fuse${l + 1}`, () => add(f, r));
    taps[`x${l + 1}f`] = s;
    return s;
  });

  // Decoder: up = nearest x2 of the deeper feature, concat [PLAM(skip), up], 2 x CBR.
  let d = x5;
  for (let l = 3; l >= 0; l--) {
    const name = `up${l + 1}`;
    const cout = l === 0 ? C[0] : C[l - 1];
    const up = g.withScope(`${name}.up`, () => upsampleNearest2d(d, 2));
    let skip = fused[l];
    if (o.plam) skip = plam(lc, `${name}.pixModule`, skip);
    else if (o.registerUnused) registerPlam(g, `${name}.pixModule`, C[l]);
    const cat = g.withScope(name, () => concat([skip, up], 1));
    d = cbrBlock(c, `${name}.nConvs.1`, cbrBlock(c, `${name}.nConvs.0`, cat, cout), cout);
    taps[`d${l + 1}`] = d;
  }
  const logits = conv2dLayer(c, "outc", d, o.outChannels, 1);
  // One class: sigmoid probabilities; several: raw logits (the reference's unused softmax).
  const out = o.outChannels === 1 ? g.withScope("last_activation", () => sigmoid(logits)) : logits;
  taps.out = out;

  // The stand-alone PLAMs the reference registers and never calls.
  if (o.registerUnused) C.forEach((ch, l) => registerPlam(g, `pix_module${l + 1}`, ch));
  return { out, taps };
}

/** LViT probabilities [B, 1, S, S]; a `Model` for the training session. */
export function lvit(c: Ctx, x: Tensor, opts: Partial<LViTOptions> = {}): Tensor {
  return lvitForward(c, x, opts).out;
}
