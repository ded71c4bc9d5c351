/**
 * The training augmentation of the reference loader (`RandomGenerator`, lvit-reference.md 4.5):
 *
 * - with probability 0.5: `np.rot90` by k in {0, 1, 2, 3}, then `np.flip` along axis 0 or 1;
 * - else with probability 0.5 (0.25 overall): `scipy.ndimage.rotate(angle, order=0,
 *   reshape=False)` by an integer angle in [-20, 19] degrees, outside filled with 0;
 * - else (0.25 overall): nothing.
 *
 * Image and mask always get the same transform. The reference draws from python `random` and
 * numpy's global generator (and replays the same sequence every epoch, an artefact of its worker
 * seeding). Here every draw is a pure function of (seed, epoch, sample index) through Philox, so
 * an epoch can be replayed for any sample, in any order, on any worker, without saved state.
 *
 * Layouts follow `lvit_folder.ts`: image C x H x W, mask H x W, both Float32Array, row-major.
 * Axis 0 is the row (H) axis and axis 1 the column (W) axis, as for the HWC numpy arrays of the
 * reference.
 */
import { philoxInto, Stream, wordToUniform } from "../rng/philox.ts";

/** One augmentation draw. */
export type AugmentOp =
  | { kind: "none" }
  | { kind: "rotflip"; k: 0 | 1 | 2 | 3; axis: 0 | 1 }
  | { kind: "rotate"; angle: number };

/** The augmentation of slot `slot` of a batch holding sample `index` there. */
export type AugmentDraw = (slot: number, index: number) => AugmentOp;

/**
 * How training draws its augmentations (`data.augment_draws`): `philox`, afresh per (seed, epoch,
 * sample); `reference-loader`, the reference DataLoader's fixed per-position transforms
 * (reference_draws.ts). The first is the default.
 */
export const AUGMENT_DRAW_MODES = ["philox", "reference-loader"] as const;

/** One of {@link AUGMENT_DRAW_MODES}. */
export type AugmentDrawMode = typeof AUGMENT_DRAW_MODES[number];

const TWO_32 = 4294967296;
const words = new Uint32Array(4);

/**
 * Draws the augmentation of sample `index` in `epoch` under `seed`. The Philox block at counter
 * (index, epoch) under key (seed, Stream.augment) gives four words: word 0 picks rot/flip vs the
 * rest, word 1 the rotation quarter-turns (or the rotate-vs-nothing choice) and word 2 the flip
 * axis (or the angle). Word 0 equals `uniformAt(seed, Stream.augment, epoch, index)`.
 */
export function drawAugment(seed: number, epoch: number, index: number): AugmentOp {
  philoxInto(words, index >>> 0, Math.floor(index / TWO_32), epoch, 0, seed, Stream.augment);
  const u0 = wordToUniform(words[0]);
  const u1 = wordToUniform(words[1]);
  const u2 = wordToUniform(words[2]);
  if (u0 < 0.5) {
    return {
      kind: "rotflip",
      k: Math.floor(u1 * 4) as 0 | 1 | 2 | 3,
      axis: Math.floor(u2 * 2) as 0 | 1,
    };
  }
  if (u1 < 0.5) return { kind: "rotate", angle: -20 + Math.floor(u2 * 40) };
  return { kind: "none" };
}

/** Output plane size after an op: odd quarter-turns swap height and width, as `np.rot90` does. */
export function outputShape(
  op: AugmentOp,
  height: number,
  width: number,
): { height: number; width: number } {
  return op.kind === "rotflip" && (op.k & 1) === 1
    ? { height: width, width: height }
    : { height, width };
}

function checkSizes(
  src: Float32Array,
  dst: Float32Array,
  channels: number,
  height: number,
  width: number,
): void {
  const n = channels * height * width;
  if (src.length !== n || dst.length !== n) {
    throw new RangeError(
      `augment: expected ${n} values (${channels}x${height}x${width}), ` +
        `got src ${src.length}, dst ${dst.length}`,
    );
  }
  if (src === dst) throw new RangeError("augment: src and dst must be different arrays");
}

/**
 * `np.flip(np.rot90(x, k), axis)` for each of `channels` planes of `src` (H x W) into `dst`
 * (W x H when k is odd). Pure index permutation, so values are copied exactly.
 */
export function rot90FlipInto(
  src: Float32Array,
  dst: Float32Array,
  channels: number,
  height: number,
  width: number,
  k: number,
  axis: 0 | 1,
): void {
  checkSizes(src, dst, channels, height, width);
  k = ((k % 4) + 4) % 4;
  const oh = (k & 1) ? width : height, ow = (k & 1) ? height : width;
  const plane = height * width;
  for (let c = 0; c < channels; c++) {
    const base = c * plane;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        // Undo the flip to get the position in the rotated array...
        const ri = axis === 0 ? oh - 1 - i : i;
        const rj = axis === 1 ? ow - 1 - j : j;
        // ...then undo the rotation (np.rot90 turns counter-clockwise in the (0, 1) plane).
        let si: number, sj: number;
        if (k === 0) si = ri, sj = rj;
        else if (k === 1) si = rj, sj = width - 1 - ri;
        else if (k === 2) si = height - 1 - ri, sj = width - 1 - rj;
        else si = height - 1 - rj, sj = ri;
        dst[base + i * ow + j] = src[base + si * width + sj];
      }
    }
  }
}

/**
 * cos and sin of an angle in degrees, exact at multiples of 90 like scipy's `special.cosdg` /
 * `sindg`, so a 90-degree rotation maps pixel centres exactly onto pixel centres.
 */
function cosSinDeg(angle: number): [number, number] {
  const a = ((angle % 360) + 360) % 360;
  if (a === 0) return [1, 0];
  if (a === 90) return [0, 1];
  if (a === 180) return [-1, 0];
  if (a === 270) return [0, -1];
  const r = a * Math.PI / 180;
  return [Math.cos(r), Math.sin(r)];
}

/**
 * `scipy.ndimage.rotate(x, angle, order=0, reshape=False, mode="constant", cval=0)` for each of
 * `channels` planes (H x W) of `src` into `dst`. The output pixel (r, c) reads the input at
 * (cos r + sin c + off_r, -sin r + cos c + off_c), with the offset chosen so the centre
 * ((H-1)/2, (W-1)/2) stays fixed, rounded to the nearest pixel by floor(x + 0.5) (scipy's order-0
 * rule); a source outside [0, n-1] on either axis gives 0. Away from exact multiples of 90 our
 * cos/sin may differ from `cosdg`/`sindg` in the last bit, which can only matter for a source
 * coordinate landing exactly on a half-pixel.
 */
export function rotateNearestInto(
  src: Float32Array,
  dst: Float32Array,
  channels: number,
  height: number,
  width: number,
  angle: number,
): void {
  checkSizes(src, dst, channels, height, width);
  const [cs, sn] = cosSinDeg(angle);
  const cr = (height - 1) / 2, cc = (width - 1) / 2;
  // Same operation order as scipy: offset = in_centre - R @ out_centre, then R @ o + offset.
  const offR = cr - (cs * cr + sn * cc);
  const offC = cc - (-sn * cr + cs * cc);
  const plane = height * width;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const ir = cs * r + sn * c + offR;
      const ic = -sn * r + cs * c + offC;
      const o = r * width + c;
      if (ir < 0 || ir > height - 1 || ic < 0 || ic > width - 1) {
        for (let ch = 0; ch < channels; ch++) dst[ch * plane + o] = 0;
        continue;
      }
      const s = Math.floor(ir + 0.5) * width + Math.floor(ic + 0.5);
      for (let ch = 0; ch < channels; ch++) dst[ch * plane + o] = src[ch * plane + s];
    }
  }
}

/**
 * Applies `op` to an image (C x H x W) and its mask (H x W), writing `outImage` and `outMask`
 * (caller-owned, same lengths; no allocation here). Returns the output plane size, which differs
 * from the input only for odd quarter-turns of a non-square image.
 */
export function applyAugment(
  op: AugmentOp,
  image: Float32Array,
  mask: Float32Array,
  channels: number,
  height: number,
  width: number,
  outImage: Float32Array,
  outMask: Float32Array,
): { height: number; width: number } {
  transformPlanes(op, image, outImage, channels, height, width);
  transformPlanes(op, mask, outMask, 1, height, width);
  return outputShape(op, height, width);
}

/**
 * Applies `op` to `channels` planes of `src` into `dst`: what `applyAugment` does to the image
 * and to the mask, for any further plane that must move with them (a pseudo label, a
 * contrastive mask).
 */
export function transformPlanes(
  op: AugmentOp,
  src: Float32Array,
  dst: Float32Array,
  channels: number,
  height: number,
  width: number,
): void {
  if (op.kind === "rotflip") rot90FlipInto(src, dst, channels, height, width, op.k, op.axis);
  else if (op.kind === "rotate") rotateNearestInto(src, dst, channels, height, width, op.angle);
  else {
    checkSizes(src, dst, channels, height, width);
    dst.set(src);
  }
}

/**
 * Draws and applies the augmentation of sample `index` in `epoch` (see `drawAugment` and
 * `applyAugment`). Returns the op that was applied, for logging and tests.
 */
export function augmentSample(
  seed: number,
  epoch: number,
  index: number,
  image: Float32Array,
  mask: Float32Array,
  channels: number,
  height: number,
  width: number,
  outImage: Float32Array,
  outMask: Float32Array,
): AugmentOp {
  const op = drawAugment(seed, epoch, index);
  applyAugment(op, image, mask, channels, height, width, outImage, outMask);
  return op;
}
