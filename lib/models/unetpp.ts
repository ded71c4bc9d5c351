/**
 * UNet++ as segmentation_models.pytorch v0.2.0 defines `UnetPlusPlus` (baselines-reference.md 3):
 * a ResNet-34 encoder (torchvision's, without avgpool and fc), the nested decoder with
 * decoder_channels (256, 128, 64, 32, 16), batch norm and no attention, and a 3x3 segmentation
 * head with a sigmoid. 26,078,609 parameters and 14.075 G conv MACs per 224x224 image; the
 * state_dict names and their order are smp's (Appendix C), so its checkpoints load by name.
 *
 * The encoder is trained from scratch here (torchvision's initialisation): the ImageNet weights
 * smp loads by default cannot be downloaded by this toolkit. A local copy of torchvision's
 * ResNet-34 checkpoint loads into `encoder.*` with `model.init_from` and `model.init_prefix:
 * encoder.` (lib/run/init_from.ts).
 */
import {
  add,
  assign,
  bnApplyOp,
  bnRunningUpdate,
  bnStatsOf,
  concat,
  conv2d,
  fma,
  type InitSpec,
  maxpool2d,
  mul,
  pad,
  relu,
  reshape,
  rsqrt,
  sigmoid,
  sub,
  type Tensor,
  upsampleNearest2d,
} from "../graph/mod.ts";
import type { Ctx } from "../nn/layers.ts";
import { z } from "../deps.ts";
import { expects, posInt } from "../config/leaf.ts";
import { checkOptions, defineOptions, type ModelOptions } from "./options.ts";

/** Settings of UNet++ (`unetpp` in the registry); the defaults are smp's resnet34 model. */
export interface UNetPPOptions {
  /**
   * The square image side an experiment trains it at, a multiple of 32 (the encoder halves the
   * image five times). The graph takes its size from its input; this one is declared so that
   * experiments are checked.
   */
  imageSize: number;
  /** Width of the encoder stem and of `layer1`; `layer2..4` have 2, 4 and 8 times it (64). */
  encoderWidth: number;
  /** BasicBlocks in `layer1..4` (ResNet-34: 3, 4, 6, 3; ResNet-18: 2, 2, 2, 2). */
  encoderBlocks: number[];
  /** Output widths of the top decoder row x_0_0 .. x_0_4 (smp's decoder_channels). */
  decoderChannels: number[];
  /** Channels of the segmentation head (smp's classes; each gets a sigmoid, as smp's "sigmoid"). */
  outChannels: number;
}

/** The options as an experiment's `model` section spells them (lib/models/options.ts). */
export const UNETPP_OPTIONS: ModelOptions<UNetPPOptions> = defineOptions<UNetPPOptions>({
  imageSize: {
    key: "image_size",
    schema: expects(z.number().int().positive().multipleOf(32), "a positive multiple of 32"),
    default: 224,
    doc: "Square image side (the encoder halves it five times)",
    unit: "pixels",
  },
  encoderWidth: {
    key: "encoder_width",
    schema: posInt(),
    default: 64,
    doc: "ResNet stem and layer1 width; layer2..4 have 2, 4 and 8 times it",
    unit: "channels",
  },
  encoderBlocks: {
    key: "encoder_blocks",
    schema: expects(z.array(posInt()).length(4), "a list of 4 positive integers"),
    default: [3, 4, 6, 3],
    doc: "BasicBlocks in layer1..4 ([3, 4, 6, 3]: ResNet-34)",
  },
  decoderChannels: {
    key: "decoder_channels",
    schema: expects(z.array(posInt()).length(5), "a list of 5 positive integers"),
    default: [256, 128, 64, 32, 16],
    doc: "Output widths of the decoder's top row x_0_0..x_0_4",
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

/** The reference configuration (smp resnet34, classes 1): the declared defaults. */
export const UNETPP_DEFAULTS: UNetPPOptions = UNETPP_OPTIONS.defaults;

// ---------------------------------------------------------------------------------------------
// Conv (no bias) + BatchNorm with leaves declared ahead of use
//
// smp registers the decoder blocks column by column (x_0_0, x_0_1, x_1_1, x_0_2, ...) but runs
// them diagonal by diagonal (x_0_0, x_1_1, x_2_2, x_3_3, x_0_1, ...). The graph lists leaves in
// creation order and that order is the state_dict's, so every block's leaves are created first
// in smp's order and its nodes later; batchNorm2d (lib/nn/layers.ts) creates both at once,
// hence this pair of functions. They build the same nodes as batchNorm2d's fused path.

/** The leaves of one bias-free conv followed by BatchNorm2d (PyTorch's names). */
interface ConvBn {
  /** Conv weight [cout, cin, k, k]. */
  w: Tensor;
  /** BN scale and shift [cout]. */
  gamma: Tensor;
  beta: Tensor;
  /** BN running statistics and step counter (states). */
  mean: Tensor;
  variance: Tensor;
  count: Tensor;
  /** The module names, for node scopes. */
  conv: string;
  bn: string;
}

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;

/** torchvision's ResNet init of the encoder convs: Kaiming normal, fan_out, ReLU gain. */
const kaimingNormalFanOut = (cout: number, k: number): InitSpec => ({
  kind: "normal",
  std: Math.sqrt(2 / (cout * k * k)),
});

/** smp's decoder init: Kaiming uniform, fan_in, ReLU gain (bound sqrt(6 / fan_in)). */
const kaimingUniformFanIn = (cin: number, k: number): InitSpec => ({
  kind: "uniform",
  bound: Math.sqrt(6 / (cin * k * k)),
});

function declareConvBn(
  c: Ctx,
  conv: string,
  bn: string,
  cin: number,
  cout: number,
  k: number,
  init: InitSpec,
): ConvBn {
  const g = c.g;
  return {
    w: g.param(`${conv}.weight`, [cout, cin, k, k], init),
    gamma: g.param(`${bn}.weight`, [cout], { kind: "const", value: 1 }),
    beta: g.param(`${bn}.bias`, [cout], { kind: "const", value: 0 }),
    mean: g.state(`${bn}.running_mean`, [cout], { kind: "const", value: 0 }),
    variance: g.state(`${bn}.running_var`, [cout], { kind: "const", value: 1 }),
    count: g.state(`${bn}.num_batches_tracked`, [1], { kind: "const", value: 0 }),
    conv,
    bn,
  };
}

/**
 * conv (no bias) -> BatchNorm2d (-> ReLU). Training: batch statistics through the fused kernels,
 * running statistics and the step counter updated as effects, as PyTorch does. Evaluation: the
 * running statistics folded into one per-channel scale and shift.
 */
function applyConvBn(
  c: Ctx,
  p: ConvBn,
  x: Tensor,
  o: { stride?: number; padding: number; relu: boolean },
): Tensor {
  const g = c.g;
  const attrs = { stride: o.stride ?? 1, padding: o.padding, dilation: 1 };
  const y = g.withScope(p.conv, () => conv2d(x, p.w, undefined, attrs));
  const C = y.shape[1];
  return g.withScope(p.bn, () => {
    if (!c.training) {
      const col = (t: Tensor) => reshape(t, [1, C, 1, 1]);
      const scale = mul(col(p.gamma), rsqrt(add(col(p.variance), BN_EPS)));
      const z = fma(y, scale, sub(col(p.beta), mul(col(p.mean), scale)));
      return o.relu ? g.withScope(`${p.bn}.relu`, () => relu(z)) : z;
    }
    const n = y.size / C;
    const stats = bnStatsOf(y);
    bnRunningUpdate(p.mean, p.variance, stats, BN_MOMENTUM, n > 1 ? n / (n - 1) : 1);
    assign(p.count, add(p.count, 1));
    return bnApplyOp(y, stats, p.gamma, p.beta, BN_EPS, o.relu);
  });
}

// ---------------------------------------------------------------------------------------------
// Encoder: torchvision ResNet with BasicBlocks (baselines-reference.md 3.2)

/** BasicBlock `name` (cin -> cout, first conv strided), leaves in torchvision's order. */
function basicBlock(c: Ctx, name: string, x: Tensor, cout: number, stride: number): Tensor {
  const cin = x.shape[1];
  const conv1 = declareConvBn(
    c,
    `${name}.conv1`,
    `${name}.bn1`,
    cin,
    cout,
    3,
    kaimingNormalFanOut(cout, 3),
  );
  const conv2 = declareConvBn(
    c,
    `${name}.conv2`,
    `${name}.bn2`,
    cout,
    cout,
    3,
    kaimingNormalFanOut(cout, 3),
  );
  // The downsample module is registered after conv2/bn2 (its position in the state_dict).
  const down = stride !== 1 || cin !== cout
    ? declareConvBn(
      c,
      `${name}.downsample.0`,
      `${name}.downsample.1`,
      cin,
      cout,
      1,
      kaimingNormalFanOut(cout, 1),
    )
    : undefined;
  const h = applyConvBn(c, conv1, x, { stride, padding: 1, relu: true });
  const y = applyConvBn(c, conv2, h, { padding: 1, relu: false });
  const identity = down ? applyConvBn(c, down, x, { stride, padding: 0, relu: false }) : x;
  return c.g.withScope(name, () => relu(add(y, identity)));
}

/**
 * MaxPool2d(3, stride 2, padding 1) on a ReLU output. The pool op has no padding; zero padding
 * gives the same maxima because every input is >= 0, and the same gradients: where a zero pad
 * wins a tie with a zero input, that input's gradient is discarded, but the ReLU before it
 * passes no gradient at 0 either.
 */
function stemPool(c: Ctx, x: Tensor): Tensor {
  return c.g.withScope("encoder.maxpool", () => maxpool2d(pad(pad(x, 2, 1, 1), 3, 1, 1), 3, 2));
}

/** Features f1..f5 (strides 2, 4, 8, 16, 32) of the ResNet encoder. */
function encoder(c: Ctx, x: Tensor, o: UNetPPOptions): Tensor[] {
  const w = o.encoderWidth;
  const stem = declareConvBn(
    c,
    "encoder.conv1",
    "encoder.bn1",
    x.shape[1],
    w,
    7,
    kaimingNormalFanOut(w, 7),
  );
  const feats = [applyConvBn(c, stem, x, { stride: 2, padding: 3, relu: true })];
  let h = stemPool(c, feats[0]);
  o.encoderBlocks.forEach((n, l) => {
    for (let b = 0; b < n; b++) {
      const stride = l > 0 && b === 0 ? 2 : 1;
      h = basicBlock(c, `encoder.layer${l + 1}.${b}`, h, w << l, stride);
    }
    feats.push(h);
  });
  return feats;
}

// ---------------------------------------------------------------------------------------------
// Nested decoder (baselines-reference.md 3.3)

/** A decoder node: nearest x2 upsampling, concat [x, skips], two conv-BN-ReLU. */
interface DecoderBlock {
  conv1: ConvBn;
  conv2: ConvBn;
  scope: string;
}

function declareBlock(
  c: Ctx,
  node: string,
  cin: number,
  skip: number,
  cout: number,
): DecoderBlock {
  const name = `decoder.blocks.${node}`;
  const conv = (i: number, from: number) =>
    declareConvBn(
      c,
      `${name}.conv${i}.0`,
      `${name}.conv${i}.1`,
      from,
      cout,
      3,
      kaimingUniformFanIn(from, 3),
    );
  return { conv1: conv(1, cin + skip), conv2: conv(2, cout), scope: name };
}

function runBlock(c: Ctx, b: DecoderBlock, x: Tensor, skips: Tensor[]): Tensor {
  const up = c.g.withScope(b.scope, () => {
    const u = upsampleNearest2d(x, 2);
    return skips.length ? concat([u, ...skips], 1) : u;
  });
  const h = applyConvBn(c, b.conv1, up, { padding: 1, relu: true });
  return applyConvBn(c, b.conv2, h, { padding: 1, relu: true });
}

/** The decoder's output x_0_4 (decoderChannels[4] channels at the input's resolution). */
function decoder(c: Ctx, feats: Tensor[], o: UNetPPOptions): Tensor {
  // F[0..4] = f5 .. f1, deepest first; skip[i] is the width of F[i + 1].
  const F = feats.slice().reverse();
  const skip = F.slice(1).map((t) => t.shape[1]);
  const dec = o.decoderChannels;
  const blocks = new Map<string, DecoderBlock>();
  // smp's ModuleDict order: column L = 0..3, rows d = 0..L; then x_0_4. The top row reads the
  // previous top node (or f5) and L + 1 skips of width skip[L]; inner rows output the width of
  // their encoder skip and read the node to their left (or F[d]) plus L + 1 - d skips.
  for (let L = 0; L < 4; L++) {
    for (let d = 0; d <= L; d++) {
      const [cin, cout] = d === 0
        ? [L === 0 ? F[0].shape[1] : dec[L - 1], dec[L]]
        : [skip[L - 1], skip[L]];
      blocks.set(`x_${d}_${L}`, declareBlock(c, `x_${d}_${L}`, cin, skip[L] * (L + 1 - d), cout));
    }
  }
  blocks.set("x_0_4", declareBlock(c, "x_0_4", dec[3], 0, dec[4]));
  // Data flow, diagonal by diagonal: x_d_d from F[d] and F[d + 1]; then x_d_(d+k) from its left
  // neighbour and [x_(d+1)_(d+k), ..., x_(d+k)_(d+k), F[d + k + 1]].
  const x = new Map<string, Tensor>();
  for (let k = 0; k < 4; k++) {
    for (let d = 0; d < 4 - k; d++) {
      const L = d + k;
      const node = `x_${d}_${L}`;
      if (k === 0) {
        x.set(node, runBlock(c, blocks.get(node)!, F[d], [F[d + 1]]));
        continue;
      }
      const dense = [];
      for (let r = d + 1; r <= L; r++) dense.push(x.get(`x_${r}_${L}`)!);
      x.set(node, runBlock(c, blocks.get(node)!, x.get(`x_${d}_${L - 1}`)!, [...dense, F[L + 1]]));
    }
  }
  return runBlock(c, blocks.get("x_0_4")!, x.get("x_0_3")!, []);
}

/** Probabilities [B, outChannels, H, W] for images [B, C, H, W] (H, W multiples of 32). */
export function unetpp(c: Ctx, x: Tensor, opts: Partial<UNetPPOptions> = {}): Tensor {
  const o = { ...UNETPP_DEFAULTS, ...opts };
  checkOptions("unetpp", UNETPP_OPTIONS, o);
  const [, , H, W] = x.shape;
  if (H % 32 || W % 32) {
    throw new RangeError(`unetpp: image sides must be multiples of 32, got ${H}x${W}`);
  }
  const d = decoder(c, encoder(c, x, o), o);
  // segmentation_head: Conv2d(3x3, bias) with smp's Xavier-uniform weights and zero bias, no
  // upsampling (Identity, index 1), then the sigmoid (index 2).
  const cin = d.shape[1];
  const k = 3;
  const g = c.g;
  const w = g.param("segmentation_head.0.weight", [o.outChannels, cin, k, k], {
    kind: "uniform",
    bound: Math.sqrt(6 / ((cin + o.outChannels) * k * k)),
  });
  const b = g.param("segmentation_head.0.bias", [o.outChannels], { kind: "const", value: 0 });
  const logits = g.withScope(
    "segmentation_head.0",
    () => conv2d(d, w, b, { stride: 1, padding: 1, dilation: 1 }),
  );
  return g.withScope("segmentation_head.2", () => sigmoid(logits));
}
