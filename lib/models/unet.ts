/**
 * The U-Net of the engine milestone: double CBR per level, max-pool down, 2x2 transposed-conv
 * up, concat [upsampled, skip] as the reference's nets/UNet.py, 1x1 head with sigmoid. With
 * widths 16-32-64-128 it has 483,441 parameters, the network the peers are benchmarked on.
 */
import { concat, maxpool2d, sigmoid, type Tensor } from "../graph/mod.ts";
import { cbr, conv2dLayer, convTransposeLayer, type Ctx } from "../nn/layers.ts";
import { z } from "../deps.ts";
import { expects, posInt } from "../config/leaf.ts";
import { defineOptions, type ModelOptions } from "./options.ts";

/** Settings of the engine's small U-Net (`unet-small` in the registry). */
export interface UNetOptions {
  /** Channel widths per level, shallowest first. */
  widths: number[];
  /** Channels of the final 1x1 conv (default 1: one binary mask). */
  outChannels?: number;
  /**
   * The square image side an experiment trains it at, divisible by 2^(levels - 1). The graph
   * takes its size from its input; this one is declared so that experiments are checked.
   */
  imageSize?: number;
}

/** The options as an experiment's `model` section spells them (lib/models/options.ts). */
export const UNET_OPTIONS: ModelOptions<UNetOptions> = defineOptions<UNetOptions>({
  imageSize: {
    key: "image_size",
    schema: posInt(),
    default: 224,
    doc: "Square image side, divisible by 2^(levels - 1), levels = the length of widths",
    unit: "pixels",
  },
  widths: {
    key: "widths",
    schema: expects(z.array(posInt()).min(2), "a list of at least 2 positive integers"),
    default: [16, 32, 64, 128],
    doc: "Channel widths per level, shallowest first",
    unit: "channels",
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
    // Each level below the first halves the image with a 2x max-pool; the decoder's transposed
    // convs double it back, so every level's side must stay whole. With the default image size
    // the widths that add levels are at fault.
    keys: ["imageSize", "widths"],
    test: (o) => {
      const levels = o.widths.length;
      const div = 2 ** (levels - 1);
      return o.imageSize! % div === 0 ? undefined : `image_size must be divisible by ${div} ` +
        `= 2^(levels - 1) for the ${levels} levels of widths (got ${o.imageSize})`;
    },
  },
]);

function double(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  return cbr(c, `${name}.nConvs.1`, cbr(c, `${name}.nConvs.0`, x, cout), cout);
}

/** Probabilities [B, 1, H, W] for images [B, C, H, W]; H and W divisible by 2^(levels-1). */
export function unet(c: Ctx, x: Tensor, o: UNetOptions): Tensor {
  const w = o.widths;
  const skips: Tensor[] = [];
  let h = double(c, "inc", x, w[0]);
  for (let l = 1; l < w.length; l++) {
    skips.push(h);
    const pooled = c.g.withScope(`down${l}.maxpool`, () => maxpool2d(h, 2));
    h = double(c, `down${l}`, pooled, w[l]);
  }
  for (let l = w.length - 1; l >= 1; l--) {
    const name = `up${w.length - l}`;
    const u = convTransposeLayer(c, `${name}.up`, h, w[l - 1], 2);
    const cat = c.g.withScope(`${name}.concat`, () => concat([u, skips[l - 1]], 1));
    h = double(c, name, cat, w[l - 1]);
  }
  const logits = conv2dLayer(c, "outc", h, o.outChannels ?? 1, 1);
  return c.g.withScope("outc.sigmoid", () => sigmoid(logits));
}
