/**
 * Raster pictures for run reports: segmentation overlays, binary prediction masks as the
 * reference saves them, and a grid that packs overlays into one PNG. All PNG bytes come from
 * `encodePng` (lib/deps.ts), whose output is deterministic, so reports are reproducible.
 */
import { encodePng } from "../deps.ts";
import { RGB_CHANNELS } from "../data/codecs.ts";

// Contour colours (RGB): ground truth, prediction, and where both contours fall on one pixel.
const GREEN = [0, 255, 0];
const RED = [255, 0, 0];
const YELLOW = [255, 255, 0];

function checkLength(what: string, a: ArrayLike<number>, want: number): void {
  if (a.length !== want) {
    throw new RangeError(`${what}: expected ${want} values, got ${a.length}`);
  }
}

/**
 * Marks the inner boundary of a binary region: a pixel inside whose 4-neighbour is outside.
 * The 4-neighbour test gives a closed, 1-pixel-wide (8-connected) contour. Pixels beyond the
 * image count as outside, so a region that touches the border is closed there too rather than
 * left open-ended.
 */
function boundary(inside: Uint8Array, size: number, height = size): Uint8Array {
  const w = size;
  const out = new Uint8Array(w * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!inside[i]) continue;
      if (
        x === 0 || y === 0 || x === w - 1 || y === height - 1 ||
        !inside[i - 1] || !inside[i + 1] || !inside[i - w] || !inside[i + w]
      ) out[i] = 1;
    }
  }
  return out;
}

/**
 * An RGB picture (HWC) of an 8-bit **BGR** image of any size with the contour of `mask` (non-zero:
 * foreground, same width and height) drawn in red: `deno task predict`'s overlay.
 */
export function maskOverlayRgb(
  image: { width: number; height: number; data: Uint8Array },
  mask: Uint8Array,
): Uint8Array {
  const { width: w, height: h } = image;
  const n = w * h;
  checkLength("maskOverlayRgb image", image.data, 3 * n);
  checkLength("maskOverlayRgb mask", mask, n);
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    out[3 * i] = image.data[3 * i + 2];
    out[3 * i + 1] = image.data[3 * i + 1];
    out[3 * i + 2] = image.data[3 * i];
  }
  const inside = new Uint8Array(n);
  for (let i = 0; i < n; i++) inside[i] = mask[i] ? 1 : 0;
  const edge = boundary(inside, w, h);
  for (let i = 0; i < n; i++) {
    if (!edge[i]) continue;
    out[3 * i] = RED[0];
    out[3 * i + 1] = RED[1];
    out[3 * i + 2] = RED[2];
  }
  return out;
}

/**
 * An RGB picture (`size*size*3` bytes, HWC) of a preprocessed sample with contours drawn on it:
 * ground truth in green, prediction (`prob > threshold`) in red, yellow where both contours
 * meet. Contours rather than filled masks keep the tissue underneath visible.
 *
 * @param image `3 x size x size` floats in [0, 1], **BGR** channel order (lib/data/preprocess.ts);
 *   written out in RGB order. Values outside [0, 1] are clamped.
 * @param mask `size x size` ground truth (> 0.5 is foreground), or null when there is none.
 * @param prob `size x size` foreground probabilities; NaN counts as background.
 */
export function overlayRgb(
  image: Float32Array,
  mask: Float32Array | null,
  prob: Float32Array,
  size: number,
  threshold = 0.5,
): Uint8Array {
  const n = size * size;
  checkLength("overlayRgb image", image, 3 * n);
  checkLength("overlayRgb prob", prob, n);
  if (mask) checkLength("overlayRgb mask", mask, n);
  const out = new Uint8Array(3 * n);
  const to8 = (v: number) => Math.round((v > 1 ? 1 : v > 0 ? v : 0) * 255);
  for (let i = 0; i < n; i++) {
    out[3 * i] = to8(image[2 * n + i]);
    out[3 * i + 1] = to8(image[n + i]);
    out[3 * i + 2] = to8(image[i]);
  }
  const predIn = new Uint8Array(n);
  for (let i = 0; i < n; i++) predIn[i] = prob[i] > threshold ? 1 : 0;
  const pred = boundary(predIn, size);
  let gt: Uint8Array | null = null;
  if (mask) {
    const gtIn = new Uint8Array(n);
    for (let i = 0; i < n; i++) gtIn[i] = mask[i] > 0.5 ? 1 : 0;
    gt = boundary(gtIn, size);
  }
  for (let i = 0; i < n; i++) {
    const g = gt !== null && gt[i] === 1;
    const p = pred[i] === 1;
    if (!g && !p) continue;
    const c = g && p ? YELLOW : g ? GREEN : RED;
    out[3 * i] = c[0];
    out[3 * i + 1] = c[1];
    out[3 * i + 2] = c[2];
  }
  return out;
}

/**
 * PNG bytes of a binary prediction: 8-bit grey, 255 where `prob > threshold`, 0 elsewhere —
 * the form in which the reference writes its test-set predictions.
 */
export function predictionPng(prob: Float32Array, size: number, threshold = 0.5): Uint8Array {
  checkLength("predictionPng prob", prob, size * size);
  const data = new Uint8Array(size * size);
  for (let i = 0; i < data.length; i++) data[i] = prob[i] > threshold ? 255 : 0;
  return encodePng({ width: size, height: size, channels: 1, depth: 8, data });
}

/**
 * PNG bytes of RGB tiles (`tileSize*tileSize*3` bytes each) laid out row-major in a grid with
 * white gaps between tiles (none around the outside). The grid is `min(columns, tiles)` wide,
 * so a few tiles do not leave a mostly empty canvas; unused cells of the last row stay white.
 * Size: `c*tileSize + (c-1)*gap` by `r*tileSize + (r-1)*gap` for c columns and r rows.
 */
export function gridPng(
  tiles: Uint8Array[],
  tileSize: number,
  columns: number,
  gap = 2,
): Uint8Array {
  if (tiles.length === 0) throw new RangeError("gridPng: no tiles");
  if (!(columns >= 1) || !Number.isInteger(columns)) {
    throw new RangeError(`gridPng: columns must be a positive integer, got ${columns}`);
  }
  if (!(gap >= 0) || !Number.isInteger(gap)) {
    throw new RangeError(`gridPng: gap must be a non-negative integer, got ${gap}`);
  }
  tiles.forEach((t, i) => checkLength(`gridPng tile ${i}`, t, tileSize * tileSize * 3));
  const cols = Math.min(columns, tiles.length);
  const rows = Math.ceil(tiles.length / cols);
  const width = cols * tileSize + (cols - 1) * gap;
  const height = rows * tileSize + (rows - 1) * gap;
  const data = new Uint8Array(width * height * 3).fill(255);
  tiles.forEach((t, k) => {
    const ox = (k % cols) * (tileSize + gap);
    const oy = Math.floor(k / cols) * (tileSize + gap);
    for (let y = 0; y < tileSize; y++) {
      const src = y * tileSize * 3;
      data.set(t.subarray(src, src + tileSize * 3), ((oy + y) * width + ox) * 3);
    }
  });
  return encodePng({ width, height, channels: RGB_CHANNELS, depth: 8, data });
}
