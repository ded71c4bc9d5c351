/**
 * The reference's U-Net baseline (nets/UNet.py, lvit-reference.md 2): single-CBR `inc`, four
 * DownBlocks 64-128-256-512-512, decoder stages ConvTranspose2d(cin/2 -> cin/2, 2, 2), concat
 * [up, skip], 2 x CBR with widths 1024->256, 512->128, 256->64, 128->64, then a 1x1 conv and a
 * sigmoid. 14,751,873 parameters at base width 64; state_dict names as the reference's.
 */
import { concat, maxpool2d, sigmoid, type Tensor } from "../graph/mod.ts";
import { conv2dLayer, convTransposeLayer, type Ctx } from "../nn/layers.ts";
import { cbrBlock } from "./lvit_blocks.ts";
import { z } from "../deps.ts";
import { expects, posInt } from "../config/leaf.ts";
import { defineOptions, type ModelOptions } from "./options.ts";

/** Settings of the reference U-Net (`unet` in the registry). */
export interface UNetRefOptions {
  /** Width of `inc` (the reference's in_channels = 64); deeper levels are 2x, 4x, 8x, 8x. */
  baseChannels: number;
  /** Channels of the final 1x1 conv (1: one binary mask). */
  outChannels: number;
  /**
   * The square image side an experiment trains it at, divisible by 16 (four 2x poolings). The
   * graph takes its size from its input; this one is declared so that experiments are checked.
   */
  imageSize?: number;
}

/** The options as an experiment's `model` section spells them (lib/models/options.ts). */
export const UNET_REF_OPTIONS: ModelOptions<UNetRefOptions> = defineOptions<UNetRefOptions>({
  imageSize: {
    key: "image_size",
    schema: expects(z.number().int().positive().multipleOf(16), "a positive multiple of 16"),
    default: 224,
    doc: "Square image side (four 2x poolings)",
    unit: "pixels",
  },
  baseChannels: {
    key: "base_channels",
    schema: posInt(),
    default: 64,
    doc: "Width C0 of the first level; deeper levels have 2, 4, 8 and 8 times C0",
    unit: "channels",
  },
  outChannels: {
    key: "out_channels",
    schema: posInt(),
    default: 1,
    doc: "Output channels (1: one binary mask)",
    unit: "channels",
  },
});

/** The reference configuration: the declared defaults. */
export const UNET_REF_DEFAULTS: UNetRefOptions = UNET_REF_OPTIONS.defaults;

/** Probabilities [B, 1, H, W] for images [B, 3, H, W] (H, W divisible by 16). */
export function unetRef(c: Ctx, x: Tensor, opts: Partial<UNetRefOptions> = {}): Tensor {
  const o = { ...UNET_REF_DEFAULTS, ...opts };
  const C = [1, 2, 4, 8, 8].map((m) => m * o.baseChannels);
  const nConvs = (name: string, h: Tensor, cout: number) =>
    cbrBlock(c, `${name}.nConvs.1`, cbrBlock(c, `${name}.nConvs.0`, h, cout), cout);
  const skips = [cbrBlock(c, "inc", x, C[0])];
  for (let l = 1; l <= 4; l++) {
    const name = `down${l}`;
    const p = c.g.withScope(`${name}.maxpool`, () => maxpool2d(skips[l - 1], 2));
    skips.push(nConvs(name, p, C[l]));
  }
  let d = skips[4];
  for (let l = 4; l >= 1; l--) {
    // up{l}: UpBlock(cin = 2 * C[l-1]... ) whose transposed conv keeps the deeper width.
    const name = `up${l}`;
    const up = convTransposeLayer(c, `${name}.up`, d, d.shape[1], 2);
    const cat = c.g.withScope(name, () => concat([up, skips[l - 1]], 1));
    d = nConvs(name, cat, l === 1 ? C[0] : C[l - 2]);
  }
  const logits = conv2dLayer(c, "outc", d, o.outChannels, 1);
  return o.outChannels === 1 ? c.g.withScope("last_activation", () => sigmoid(logits)) : logits;
}
