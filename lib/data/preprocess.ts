/**
 * The image and mask preprocessing of the reference loader (lvit-reference.md 4.3), which reads
 * with OpenCV: colour images as 3-channel uint8 BGR, masks as grey, both resized with
 * INTER_LINEAR, then image / 255 (CHW float) and mask > 0.
 */
import { type DecodedImage, RGB_CHANNELS } from "./codecs.ts";

/**
 * An 8-bit image, HWC interleaved. The result type of the conversions below, which mirror
 * what `cv2.imread` hands the reference code.
 */
export interface Image8 {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Samples per pixel (1: grey, 3: BGR). */
  channels: number;
  /** width * height * channels samples, row-major, channels interleaved. */
  data: Uint8Array;
}

/** A sample reduced to 8 bits the way OpenCV's decoders do without IMREAD_ANYDEPTH (high byte). */
function sample8(data: Uint8Array | Uint16Array, i: number): number {
  return data instanceof Uint16Array ? data[i] >> 8 : data[i];
}

/**
 * Like `cv2.imread(path, IMREAD_COLOR)`: 3 channels in **B, G, R** order, grey replicated,
 * alpha dropped, 16-bit reduced to 8.
 */
export function toBgr8(img: DecodedImage): Image8 {
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  const c = img.channels;
  for (let i = 0; i < n; i++) {
    if (c === 1) {
      const g = sample8(img.data, i);
      out[3 * i] = g;
      out[3 * i + 1] = g;
      out[3 * i + 2] = g;
    } else {
      out[3 * i] = sample8(img.data, c * i + 2);
      out[3 * i + 1] = sample8(img.data, c * i + 1);
      out[3 * i + 2] = sample8(img.data, c * i);
    }
  }
  return { width: img.width, height: img.height, channels: RGB_CHANNELS, data: out };
}

/**
 * Like `cv2.imread(path, IMREAD_GRAYSCALE)` for grey files (exact). Colour files are reduced with
 * the BT.601 weights of cv2.cvtColor; OpenCV's decoders may use slightly different fixed-point
 * weights there, so colour masks can differ by one grey level (the masks in use are all grey).
 */
export function toGray8(img: DecodedImage): Image8 {
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  const c = img.channels;
  for (let i = 0; i < n; i++) {
    if (c === 1) out[i] = sample8(img.data, i);
    else {
      const r = sample8(img.data, c * i);
      const g = sample8(img.data, c * i + 1);
      const b = sample8(img.data, c * i + 2);
      out[i] = roundHalfEven(0.299 * r + 0.587 * g + 0.114 * b);
    }
  }
  return { width: img.width, height: img.height, channels: 1, data: out };
}

/** Round to nearest, ties to even: what cvRound (lrint) does inside saturate_cast. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends ties up; a tie landing on an odd integer goes back down to the even one.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** OpenCV's saturate_cast<uchar>(double): round half to even, clamp to [0, 255]. */
export function saturateU8(x: number): number {
  const r = roundHalfEven(x);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/**
 * Source index and weight for each destination coordinate along one axis, per OpenCV's
 * INTER_LINEAR setup: half-pixel centres `(d + 0.5) * scale - 0.5`, and at both borders the
 * edge pixel is taken with weight 1 (no extrapolation).
 */
function axisTaps(src: number, dst: number): { i0: Int32Array; i1: Int32Array; w: Float64Array } {
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
 * Bilinear resize with `cv2.resize(..., interpolation=INTER_LINEAR)` semantics (half-pixel
 * centres, border clamp, no antialiasing when shrinking), computed in float64 and rounded with
 * saturate_cast. OpenCV's own 8-bit path uses 11-bit fixed-point weights, so an occasional pixel
 * can differ from cv2 by one level; the float form is the specification here.
 */
export function resizeLinear(img: Image8, outW: number, outH: number): Image8 {
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) {
    throw new RangeError(`resize target must be positive integers, got ${outW}x${outH}`);
  }
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
        // Horizontal pass on both rows, then vertical, as OpenCV orders it.
        const top = data[(r0 + x0) * c + k] * (1 - fx) + data[(r0 + x1) * c + k] * fx;
        const bot = data[(r1 + x0) * c + k] * (1 - fx) + data[(r1 + x1) * c + k] * fx;
        out[(dy * outW + dx) * c + k] = saturateU8(top * (1 - fy) + bot * fy);
      }
    }
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/** HWC uint8 to CHW float32 in [0, 1] (the reference's ToTensor on a uint8 array / 255). */
export function toChwUnit(img: Image8): Float32Array {
  const { width: w, height: h, channels: c, data } = img;
  const n = w * h;
  const out = new Float32Array(c * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) out[k * n + i] = data[i * c + k] / 255;
  }
  return out;
}

/** A one-channel image to a {0, 1} mask: any value above 0 is foreground. */
export function binarize(img: Image8): Float32Array {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i] > 0 ? 1 : 0;
  return out;
}

/** A decoded image as the model input: BGR, resized to size x size, CHW float32 in [0, 1]. */
export function preprocessImage(img: DecodedImage, size: number): Float32Array {
  return toChwUnit(resizeLinear(toBgr8(img), size, size));
}

/** A decoded mask as the target: grey, resized bilinearly to size x size, then > 0 -> 1. */
export function preprocessMask(img: DecodedImage, size: number): Float32Array {
  return binarize(resizeLinear(toGray8(img), size, size));
}
