/**
 * A seeded data set of blob images for engine tests and the demo until the LViT data set
 * generator exists: noisy 3-channel images with 1-3 bright ellipses and their masks. Every image
 * is a pure function of (seed, index), so any subset can be regenerated independently.
 */
import { fillNormal, philox4x32, Stream, wordToUniform } from "../rng/philox.ts";

/** A batch of blob images and their masks, as `blobSet` returns it. */
export interface BlobSet {
  /** Number of images. */
  n: number;
  /** Side length of every image and mask, in pixels. */
  size: number;
  /** n x 3 x size x size, values roughly in [0, 1]. */
  images: Float32Array;
  /** n x 1 x size x size, values 0 or 1. */
  masks: Float32Array;
}

export function blobImage(seed: number, index: number, size: number) {
  const img = new Float32Array(3 * size * size);
  const mask = new Float32Array(size * size);
  let ctr = 0;
  const draws: number[] = [];
  const u = () => {
    if (!draws.length) {
      const w = philox4x32([index, 0, ctr++, 0], [seed, Stream.data]);
      for (const x of w) draws.push(wordToUniform(x));
    }
    return draws.shift()!;
  };
  const count = 1 + Math.floor(u() * 3);
  for (let b = 0; b < count; b++) {
    const cy = (0.15 + 0.7 * u()) * size;
    const cx = (0.15 + 0.7 * u()) * size;
    const ry = (0.06 + 0.12 * u()) * size;
    const rx = (0.06 + 0.12 * u()) * size;
    for (let yy = 0; yy < size; yy++) {
      for (let xx = 0; xx < size; xx++) {
        const d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2;
        if (d <= 1) mask[yy * size + xx] = 1;
      }
    }
  }
  // Background: a tilted gradient per channel; foreground: a brighter, channel-shifted tone.
  const tilt = u();
  const noise = new Float32Array(3 * size * size);
  fillNormal(noise, seed, Stream.data, 1_000_000 + index, 0, 0.12);
  for (let c = 0; c < 3; c++) {
    const fg = 0.35 + 0.1 * c;
    for (let i = 0; i < size * size; i++) {
      const yy = Math.floor(i / size);
      const bg = 0.25 + 0.2 * tilt * (yy / size);
      img[c * size * size + i] = bg + fg * mask[i] + noise[c * size * size + i];
    }
  }
  return { img, mask };
}

/** Images [first, first + n) of the set with this seed. */
export function blobSet(seed: number, first: number, n: number, size: number): BlobSet {
  const images = new Float32Array(n * 3 * size * size);
  const masks = new Float32Array(n * size * size);
  for (let i = 0; i < n; i++) {
    const { img, mask } = blobImage(seed, first + i, size);
    images.set(img, i * img.length);
    masks.set(mask, i * mask.length);
  }
  return { n, size, images, masks };
}
