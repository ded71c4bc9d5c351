/**
 * Host-side pieces of the semi-supervised setting (lvit-reference.md 3.2):
 * - EPI, Exponential Pseudo-label Iteration: an EMA of each unlabeled image's **predicted mask**
 *   (not of model weights), P_t = beta * P_{t-1} + (1 - beta) * prediction, beta = 0.99 in the
 *   paper;
 * - binarising a pseudo label (the reference does not say whether it does; callers choose);
 * - choosing the contrastive label of an unlabeled sample: the row of the contrastive set whose
 *   text features are most cosine-similar to the sample's (TextSim, step 1 of the LV loss).
 *
 * All of it is plain float64 arithmetic in a fixed order, so the results are bit-for-bit the same
 * on every machine and run: pseudo labels are state that a resumed run must reproduce exactly.
 */

/**
 * One EPI step, elementwise: `out[i] = f32(beta * prev[i] + (1 - beta) * pred[i])`, evaluated in
 * float64 and rounded once to f32. `out` may be `prev` itself (an in-place update is safe: each
 * element is read before it is written).
 * @param prev the stored pseudo label P_{t-1}
 * @param pred the model's current prediction (probabilities)
 * @param beta the EMA momentum in [0, 1] (paper: 0.99); 0 takes the prediction as it is
 * @param out where to write P_t (a new array by default)
 * @returns `out`
 * @throws RangeError for mismatched lengths or beta outside [0, 1]
 */
export function epiUpdate(
  prev: Float32Array,
  pred: Float32Array,
  beta: number,
  out: Float32Array = new Float32Array(prev.length),
): Float32Array {
  if (pred.length !== prev.length || out.length !== prev.length) {
    throw new RangeError(
      `epiUpdate: lengths differ (prev ${prev.length}, pred ${pred.length}, out ${out.length})`,
    );
  }
  if (!(beta >= 0 && beta <= 1)) throw new RangeError(`EPI beta must be in [0, 1], got ${beta}`);
  const keep = 1 - beta;
  // Storing into a Float32Array rounds to nearest f32: one rounding of the float64 value.
  for (let i = 0; i < prev.length; i++) out[i] = beta * prev[i] + keep * pred[i];
  return out;
}

/**
 * A probability map as a hard pseudo label: 1 where p > threshold, else 0 (NaN gives 0).
 * @param threshold strict lower bound of foreground (default 0.5)
 */
export function binarizePseudo(p: Float32Array, threshold = 0.5): Float32Array {
  const out = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) out[i] = p[i] > threshold ? 1 : 0;
  return out;
}

/**
 * Cosine similarity of two feature vectors (e.g. flattened tokens x dim text features), summed
 * in float64 in index order. A zero vector has no direction; its similarity to anything is
 * defined as 0 rather than NaN, so it can never win {@link pickContrastive} by accident.
 * @throws RangeError when the lengths differ
 */
export function textCosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) {
    throw new RangeError(`textCosine: lengths differ (${a.length} vs ${b.length})`);
  }
  let dot = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa === 0 || bb === 0) return 0;
  return dot / (Math.sqrt(aa) * Math.sqrt(bb));
}

/**
 * The contrastive label of an unlabeled sample: the index of the bank row whose text features
 * are most cosine-similar to `text` (argmax of {@link textCosine}). Ties go to the lowest index,
 * so a zero `text` vector (every similarity 0) picks row 0; NaN similarities never win.
 * @param text the sample's text features
 * @param bank the contrastive set's text features, in its row order, each as long as `text`
 * @throws RangeError for an empty bank or a length mismatch
 */
export function pickContrastive(text: Float32Array, bank: readonly Float32Array[]): number {
  if (bank.length === 0) throw new RangeError("pickContrastive: the contrastive bank is empty");
  let best = 0;
  let bestSim = -Infinity;
  for (let k = 0; k < bank.length; k++) {
    const s = textCosine(text, bank[k]);
    // Strictly greater: an equal later row does not displace an earlier one.
    if (s > bestSim) {
      best = k;
      bestSim = s;
    }
  }
  return best;
}
