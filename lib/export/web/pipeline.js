// The exported page's image pipeline, in plain JavaScript so that a browser runs it as it is
// (no build step) and Deno can import it to check it against the TypeScript it mirrors
// (tests/web_export_test.ts). Every function repeats the arithmetic of its counterpart in
// lib/data/preprocess.ts, lib/run/predict.ts or lib/report/images.ts operation for operation,
// in the same order and precision, so the page's mask equals `deno task predict`'s bit for bit.

/**
 * The browser's decoded RGBA pixels (canvas `getImageData`) as 3-channel BGR, what `toBgr8`
 * makes of an 8-bit RGB(A) or grey file (cv2.imread's channel order): alpha dropped.
 * @param {Uint8ClampedArray | Uint8Array} rgba
 * @param {number} width
 * @param {number} height
 */
export function rgbaToBgr(rgba, width, height) {
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[3 * i] = rgba[4 * i + 2];
    out[3 * i + 1] = rgba[4 * i + 1];
    out[3 * i + 2] = rgba[4 * i];
  }
  return { width, height, channels: 3, data: out };
}

/** Round to nearest, ties to even (preprocess.ts `roundHalfEven`). @param {number} x */
function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** OpenCV's saturate_cast<uchar> (preprocess.ts `saturateU8`). @param {number} x */
function saturateU8(x) {
  const r = roundHalfEven(x);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/**
 * INTER_LINEAR taps along one axis (preprocess.ts `axisTaps`).
 * @param {number} src
 * @param {number} dst
 */
function axisTaps(src, dst) {
  const scale = src / dst;
  const i0 = new Int32Array(dst);
  const i1 = new Int32Array(dst);
  const w = new Float64Array(dst);
  for (let d = 0; d < dst; d++) {
    let f = (d + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) {
      s = 0;
      f = 0;
    }
    if (s >= src - 1) {
      s = src - 1;
      f = 0;
    }
    i0[d] = s;
    i1[d] = Math.min(s + 1, src - 1);
    w[d] = f;
  }
  return { i0, i1, w };
}

/**
 * Bilinear resize of an 8-bit HWC image with cv2.INTER_LINEAR sampling (preprocess.ts
 * `resizeLinear`): float64 arithmetic, rounded with saturate_cast. Not canvas scaling, whose
 * filter is the browser's own.
 * @param {{width: number, height: number, channels: number, data: Uint8Array}} img
 * @param {number} outW
 * @param {number} outH
 */
export function resizeLinear(img, outW, outH) {
  const { width: w, height: h, channels: c, data } = img;
  const xs = axisTaps(w, outW);
  const ys = axisTaps(h, outH);
  const out = new Uint8Array(outW * outH * c);
  for (let dy = 0; dy < outH; dy++) {
    const r0 = ys.i0[dy] * w;
    const r1 = ys.i1[dy] * w;
    const fy = ys.w[dy];
    for (let dx = 0; dx < outW; dx++) {
      const x0 = xs.i0[dx];
      const x1 = xs.i1[dx];
      const fx = xs.w[dx];
      for (let k = 0; k < c; k++) {
        const top = data[(r0 + x0) * c + k] * (1 - fx) + data[(r0 + x1) * c + k] * fx;
        const bot = data[(r1 + x0) * c + k] * (1 - fx) + data[(r1 + x1) * c + k] * fx;
        out[(dy * outW + dx) * c + k] = saturateU8(top * (1 - fy) + bot * fy);
      }
    }
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/**
 * HWC uint8 to CHW float32 / 255 (preprocess.ts `toChwUnit`).
 * @param {{width: number, height: number, channels: number, data: Uint8Array}} img
 */
export function toChwUnit(img) {
  const { width: w, height: h, channels: c, data } = img;
  const n = w * h;
  const out = new Float32Array(c * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) out[k * n + i] = data[i * c + k] / 255;
  }
  return out;
}

/**
 * The model's `image` input for decoded RGBA pixels: BGR, resized to size x size, / 255
 * (preprocess.ts `preprocessImage`).
 * @param {Uint8ClampedArray | Uint8Array} rgba
 * @param {number} width
 * @param {number} height
 * @param {number} size
 */
export function preprocessRgba(rgba, width, height, size) {
  return toChwUnit(resizeLinear(rgbaToBgr(rgba, width, height), size, size));
}

/**
 * Bilinear resize of a float plane, cv2.INTER_LINEAR sampling, no rounding (predict.ts
 * `resizePlane`): float64 arithmetic stored as float32.
 * @param {Float32Array} src
 * @param {number} sw
 * @param {number} sh
 * @param {number} dw
 * @param {number} dh
 */
export function resizePlane(src, sw, sh, dw, dh) {
  const out = new Float32Array(dw * dh);
  const fx = sw / dw, fy = sh / dh;
  const x0 = new Int32Array(dw), x1 = new Int32Array(dw), ax = new Float64Array(dw);
  for (let x = 0; x < dw; x++) {
    const s = (x + 0.5) * fx - 0.5;
    const i = Math.floor(s);
    ax[x] = s - i;
    x0[x] = Math.min(Math.max(i, 0), sw - 1);
    x1[x] = Math.min(Math.max(i + 1, 0), sw - 1);
  }
  for (let y = 0; y < dh; y++) {
    const s = (y + 0.5) * fy - 0.5;
    const i = Math.floor(s);
    const ay = s - i;
    const r0 = Math.min(Math.max(i, 0), sh - 1) * sw,
      r1 = Math.min(Math.max(i + 1, 0), sh - 1) * sw;
    for (let x = 0; x < dw; x++) {
      const top = src[r0 + x0[x]] * (1 - ax[x]) + src[r0 + x1[x]] * ax[x];
      const bottom = src[r1 + x0[x]] * (1 - ax[x]) + src[r1 + x1[x]] * ax[x];
      out[y * dw + x] = top * (1 - ay) + bottom * ay;
    }
  }
  return out;
}

/**
 * The 0/255 mask of the model's size x size probabilities at the image's own size: resized as
 * `resizePlane`, then `> threshold` (predict.ts `writePrediction`).
 * @param {Float32Array} prob
 * @param {number} size
 * @param {number} width
 * @param {number} height
 * @param {number} threshold
 */
export function maskOf(prob, size, width, height, threshold) {
  const p = resizePlane(prob, size, size, width, height);
  const mask = new Uint8Array(width * height);
  for (let q = 0; q < mask.length; q++) if (p[q] > threshold) mask[q] = 255;
  return mask;
}

/**
 * Draws the mask's contour in red over RGBA pixels in place: inside pixels with a 4-neighbour
 * outside (or on the image's edge), as `predict`'s `_overlay.png` (images.ts `maskOverlayRgb`).
 * @param {Uint8ClampedArray} rgba
 * @param {Uint8Array} mask
 * @param {number} w
 * @param {number} h
 */
export function drawContour(rgba, mask, w, h) {
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (
        x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
        !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]
      ) {
        rgba[4 * i] = 255;
        rgba[4 * i + 1] = 0;
        rgba[4 * i + 2] = 0;
        rgba[4 * i + 3] = 255;
      }
    }
  }
}

/** @param {string} name */
function stemOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/**
 * The description of an image in a text table (rows [image, description]), found as `predict
 * --texts` finds it: by file name (or `mask_` + name), else by stem; undefined when absent.
 * @param {[string, string][]} rows
 * @param {string} name the image's file name
 */
export function lookupText(rows, name) {
  const table = new Map(rows);
  const stem = stemOf(name);
  const exact = table.get(name) ?? table.get(`mask_${name}`);
  if (exact !== undefined) return exact;
  for (const [k, v] of table) {
    const ks = stemOf(k);
    if (ks === stem || ks === `mask_${stem}`) return v;
  }
  return undefined;
}

/** The name `predict` gives an image's mask: `<stem>.png`. @param {string} name */
export function maskFileName(name) {
  return `${stemOf(name)}.png`;
}
