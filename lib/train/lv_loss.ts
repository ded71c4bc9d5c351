/**
 * The language-vision (LV) loss of the semi-supervised setting (lvit-reference.md 3.2): for an
 * unlabeled image, 1 - cosine similarity between the predicted probability map and the
 * contrastive mask chosen by text similarity (see `pickContrastive` in epi.ts), plus `semiLoss`,
 * the reference's `WeightedDiceBCE_unsup` shape: Dice + BCE + alpha * LV.
 *
 * Built only from existing graph ops, so autodiff supplies the gradient and every backend runs it
 * without a new kernel.
 *
 * Where eps goes. The textbook guard `sum(p*c) / (|p| * |c| + eps)` keeps the forward finite for
 * an all-zero p, but not the backward: d sqrt(s)/ds = 0.5 / sqrt(s) is infinite at s = 0, and the
 * chain rule then multiplies it by d(sum p^2)/dp = 2p = 0, giving inf * 0 = NaN in every element
 * of the gradient. A sigmoid output is exactly 0 only after f32 underflow (logits below about
 * -104), but one NaN would poison the whole update, so eps goes **inside each square root**:
 *
 *   cos_b = sum(p_b * c_b) / (sqrt(sum(p_b^2) + eps) * sqrt(sum(c_b^2) + eps))
 *
 * Then both norms are at least sqrt(eps) = 1e-4, the forward and backward are finite for an
 * all-zero p, an all-zero c, or both (cos = 0, loss 1, gradient 0 from that sample when c = 0),
 * and the bias against the exact cosine is a relative eps / (2 * sum(p^2)): under 1e-8 for any
 * map with a pixel-sum of squares above one, invisible in f32.
 */
import {
  add,
  affine,
  div,
  mean,
  mul,
  reshape,
  sqrt,
  square,
  sum,
  type Tensor,
} from "../graph/mod.ts";
import { segLoss } from "./loss.ts";

/** Default eps of {@link lvLoss}, inside each norm's square root (see the module comment). */
export const LV_EPS = 1e-8;

/**
 * LV loss: mean over the batch of 1 - cos(p_b, c_b), with the per-sample maps flattened.
 * @param p predicted probabilities, [B, ...] (normally [B, 1, H, W])
 * @param c the selected contrastive masks, same shape as p (a label: no gradient is needed)
 * @param eps added to each sum of squares before its square root
 * @returns shape [1], as `segLoss` returns
 */
export function lvLoss(p: Tensor, c: Tensor, eps = LV_EPS): Tensor {
  if (p.shape.length < 2 || p.shape.join() !== c.shape.join()) {
    throw new RangeError(
      `lvLoss needs p and c of one shape [B, ...], got [${p.shape}] and [${c.shape}]`,
    );
  }
  // Per-sample reductions over everything but the batch axis: [B, 1, 1, 1].
  const img = p.shape.slice(1).map((_, i) => i + 1);
  const dot = sum(mul(p, c), img);
  const np = sqrt(affine(sum(square(p), img), 1, eps));
  const nc = sqrt(affine(sum(square(c), img), 1, eps));
  const cos = div(dot, mul(np, nc));
  return reshape(mean(affine(cos, -1, 1), [0]), [1]);
}

/**
 * {@link lvLoss} in float64 on plain arrays, the same formula term for term: the reference the
 * tests compare the graph with.
 * @param p predictions, `batch * plane` values, sample-major
 * @param c contrastive masks, same layout
 * @param plane values per sample (C * H * W)
 */
export function lvLossRef(
  p: Float64Array,
  c: Float64Array,
  batch: number,
  plane: number,
  eps = LV_EPS,
): number {
  if (p.length !== batch * plane || c.length !== batch * plane) {
    throw new RangeError(`lvLossRef: expected ${batch} x ${plane} values in p and c`);
  }
  // The graph adds eps after rounding it to f32 (affine constants are f32); do the same so the
  // two agree to float64 precision on f32 inputs.
  const e = Math.fround(eps);
  let total = 0;
  for (let b = 0; b < batch; b++) {
    let dot = 0, pp = 0, cc = 0;
    for (let i = b * plane; i < (b + 1) * plane; i++) {
      dot += p[i] * c[i];
      pp += p[i] * p[i];
      cc += c[i] * c[i];
    }
    total += 1 - dot / (Math.sqrt(pp + e) * Math.sqrt(cc + e));
  }
  return total / batch;
}

/** Term weights of {@link semiLoss}. */
export interface SemiLossWeights {
  /** Weight of the squared-denominator Dice (reference training: 0.5). */
  dice: number;
  /** Weight of the class-balanced BCE (reference training: 0.5). */
  bce: number;
  /** Weight of the LV loss (reference helper: 0.1); 0 leaves it out of the graph. */
  lv: number;
}

/**
 * Loss of an unlabeled batch: `segLoss(p, y, {dice, bce}) + lv * lvLoss(p, c)`, with y the
 * (EPI-smoothed) pseudo label and c the contrastive mask. With lv = 0 the LV term is not built at
 * all, so c is then unused and the graph is exactly the supervised one.
 * @returns shape [1]
 * @throws RangeError for a negative or non-finite lv weight
 */
export function semiLoss(p: Tensor, y: Tensor, c: Tensor, weights: SemiLossWeights): Tensor {
  if (!(Number.isFinite(weights.lv) && weights.lv >= 0)) {
    throw new RangeError(`the LV loss weight must be finite and >= 0, got ${weights.lv}`);
  }
  const seg = segLoss(p, y, { dice: weights.dice, bce: weights.bce });
  if (weights.lv === 0) return seg;
  return add(seg, affine(lvLoss(p, c), weights.lv, 0));
}
