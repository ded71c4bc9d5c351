/**
 * The U-Net of the engine milestone: double CBR per level, max-pool down, 2x2 transposed-conv
 * up, concat [upsampled, skip] as the reference's nets/UNet.py, 1x1 head with sigmoid. With
 * widths 16-32-64-128 it has 483,441 parameters, the network the peers are benchmarked on.
 */
import { concat, maxpool2d, sigmoid, type Tensor } from "../graph/mod.ts";
import { cbr, conv2dLayer, convTransposeLayer, type Ctx } from "../nn/layers.ts";

/** Settings of the engine's small U-Net (`unet-small` in the registry). */
export interface UNetOptions {
  /** Channel widths per level, shallowest first. */
  widths: number[];
  /** Channels of the final 1x1 conv (default 1: one binary mask). */
  outChannels?: number;
}

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
