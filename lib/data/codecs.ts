/**
 * Image decoding for the data sets: PNG, TIFF and JPEG to one pixel layout.
 *
 * Libraries (all pure JS, no native code, so they run wherever Deno does):
 * - PNG: `fast-png` (image-js organisation, maintained, typed). It keeps 16-bit samples as
 *   Uint16Array instead of silently reducing them, and exposes palette data, which covers every
 *   PNG colour type. `pngjs` always expands to 8-bit RGBA and is callback/stream shaped.
 * - TIFF: `utif2`, the maintained npm release of Photopea's UTIF.js. Small, synchronous, and it
 *   handles the PackBits RGB strips of the MoNuSeg test images as well as LZW/Deflate; `geotiff`
 *   is far larger and async-only for what we need.
 * - JPEG: `jpeg-js`, the de-facto pure-JS baseline+progressive decoder, which has built-in
 *   resolution and memory caps for untrusted files.
 *
 * Every failure, whether thrown by a library or detected here, becomes a {@link DataError}.
 */
import { convertIndexedToRgb, decodePng, jpegJs, UTIF } from "../deps.ts";
import { BoundedReadError, fmtBytes, readFileBounded } from "../io/bounded.ts";
import { DataError, describeError } from "./errors.ts";

export { DataError } from "./errors.ts";

/** Decoded pixels, row-major and channel-interleaved (HWC), in the file's own channel order. */
export interface DecodedImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 = grey, 3 = RGB, 4 = RGBA. */
  channels: 1 | 3 | 4;
  /** width * height * channels samples; Uint16Array only for 16-bit PNGs. */
  data: Uint8Array | Uint16Array;
}

/**
 * The largest pixel count accepted (2^26, e.g. 8192 x 8192). It is checked from the header
 * before any pixel buffer is allocated, so a 20-byte file cannot ask for gigabytes. The data
 * sets in use are far smaller (MoNuSeg 1000 x 1000, MosMedData+ 512 x 512, QaTa-COV19 about
 * 224 x 224) and every sample is resized to the model's 224 or so; larger scans (whole-slide
 * images) would have to be tiled first anyway.
 */
export const MAX_PIXELS = 2 ** 26;

/** Samples per pixel of an RGB (or BGR) image: what the readers make of every image. */
export const RGB_CHANNELS = 3;

/**
 * The most bytes one decoded image may take (256 MiB): width x height x channels x bytes per
 * sample of what the decoder builds (e.g. 8192 x 8192 RGBA 8-bit, 8192 x 4096 RGBA 16-bit). It
 * is checked from the header, before decoding: the pixel limit alone lets a 2 MB PNG of
 * 16384 x 16384 RGBA 16-bit ask for 2 GiB and its conversions for 6 GB. Reading a sample holds
 * the image and its mask, each with a converted copy, so this keeps the peak near 1 GiB.
 */
export const MAX_DECODED_BYTES = 2 ** 28;

/** Image files larger than this are refused before being read (256 MiB). */
export const MAX_FILE_BYTES = 2 ** 28;

/** The container formats recognised by their magic bytes. */
export type ImageFormat = "png" | "tiff" | "jpeg";

/** The format of `bytes` from its magic number, or null when it is none of ours. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  const b = bytes;
  if (
    b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 &&
    b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a
  ) return "png";
  if (
    b.length >= 4 &&
    ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a))
  ) return "tiff";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  return null;
}

/**
 * Decodes an image held in memory. The format comes from the content, not the file name, since
 * data sets in the wild contain mislabelled extensions. A TIFF whose directory or pixel data
 * runs past the end of the file, and a PNG that fails to decode and is cut short, are reported
 * as truncated ({@link tiffTruncation}, {@link pngTruncation}): the libraries' own messages
 * ("offset outside the bounds", zero-filled strips) do not tell a user the file is incomplete.
 * @param bytes the file contents
 * @param path used only in error messages
 * @throws DataError for an unknown format, a corrupt or truncated file or absurd dimensions
 */
export function decodeImage(bytes: Uint8Array, path: string): DecodedImage {
  const format = sniffFormat(bytes);
  if (format === null) {
    throw new DataError(path, "not a PNG, TIFF or JPEG file (unrecognised signature)");
  }
  // UTIF zero-fills strips it cannot find instead of failing: check the structure first.
  const cut = format === "tiff" ? tiffTruncation(bytes) : null;
  if (cut) throw new DataError(path, cut);
  try {
    return decodeKnown(bytes, path, format);
  } catch (e) {
    // The structural diagnosis says more than the inflater's message. A PNG that decoded
    // without IEND lost nothing, so this is only looked at when decoding failed.
    const pngCut = format === "png" ? pngTruncation(bytes) : null;
    if (e instanceof DataError && pngCut !== null) throw new DataError(path, pngCut);
    throw e;
  }
}

function decodeKnown(bytes: Uint8Array, path: string, format: ImageFormat): DecodedImage {
  let img: DecodedImage;
  try {
    img = format === "png"
      ? decodePngImage(bytes, path)
      : format === "tiff"
      ? decodeTiffImage(bytes, path)
      : decodeJpegImage(bytes, path);
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(
      path,
      `corrupt or unsupported ${format.toUpperCase()}: ${describeError(e)}`,
    );
  }
  // Libraries may return short buffers on truncated input instead of throwing.
  const expected = img.width * img.height * img.channels;
  if (img.data.length < expected) {
    throw new DataError(
      path,
      `truncated ${format.toUpperCase()}: ${img.data.length} samples, expected ${expected}`,
    );
  }
  if (img.data.length > expected) img = { ...img, data: img.data.subarray(0, expected) };
  return img;
}

/**
 * Whether a TIFF file is cut short: its first image directory, or the strips or tiles that
 * directory points to, run past the end of the file. UTIF zero-fills pixel data it cannot find
 * instead of failing, so a truncated uncompressed TIFF would otherwise decode "fine".
 *
 * The file is untrusted: every count it claims is checked against the file length before it is
 * used, and nothing is allocated per entry or per value (one DataView, values read in place), so
 * a directory claiming billions of strips costs neither memory nor time.
 * @returns a description of the truncation, or null when everything the directory names is there
 */
export function tiffTruncation(bytes: Uint8Array): string | null {
  const len = bytes.length;
  if (len < 8) return `truncated TIFF: ${len} bytes, shorter than the 8-byte header`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = bytes[0] === 0x49;
  const u = (off: number, width: number): number =>
    width === 2 ? dv.getUint16(off, le) : dv.getUint32(off, le);
  const ifd = u(4, 4);
  if (ifd + 2 > len) {
    return `truncated TIFF: the image directory is at byte ${ifd} but the file has ${len} bytes`;
  }
  const count = u(ifd, 2);
  if (ifd + 2 + 12 * count > len) {
    return `truncated TIFF: the image directory (${count} entries at byte ${ifd}) runs past ` +
      `the end of the file (${len} bytes)`;
  }
  // Only the offset/byte-count tags matter here: strips (273, 279) and tiles (324, 325). Per
  // tag, where its table lies (a repeated tag's last entry wins), checked to be inside the file.
  const TAGS = [273, 279, 324, 325];
  const at = [0, 0, 0, 0], n = [-1, -1, -1, -1], width = [0, 0, 0, 0];
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + 12 * i;
    const tag = u(e, 2);
    const slot = TAGS.indexOf(tag);
    if (slot < 0) continue;
    const type = u(e + 2, 2);
    const cnt = u(e + 4, 4);
    const w = type === 3 ? 2 : type === 4 ? 4 : 0;
    if (w === 0) continue;
    const where = cnt * w <= 4 ? e + 8 : u(e + 8, 4);
    if (where + cnt * w > len) {
      return `truncated TIFF: the table of tag ${tag} at byte ${where} runs past the end of the ` +
        `file (${len} bytes)`;
    }
    at[slot] = where;
    n[slot] = cnt;
    width[slot] = w;
  }
  for (const [o, c] of [[0, 1], [2, 3]]) {
    if (n[o] < 0 || n[c] < 0) continue;
    // Both tables lie inside the file (checked above), so this walk is bounded by its length.
    let end = 0;
    for (let k = 0; k < Math.min(n[o], n[c]); k++) {
      end = Math.max(end, u(at[o] + k * width[o], width[o]) + u(at[c] + k * width[c], width[c]));
    }
    if (end > len) {
      return `truncated TIFF: pixel data runs to byte ${end} but the file has ${len} bytes ` +
        `(${end - len} missing)`;
    }
  }
  return null;
}

/**
 * Whether a PNG file is cut short: walking its chunks runs off the end before the IEND chunk.
 * Used to say "truncated" where the inflater only reports that decompressing failed.
 * @returns a description of the truncation, or null when the chunk structure is complete
 */
export function pngTruncation(bytes: Uint8Array): string | null {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8; // past the signature
  while (pos + 8 <= bytes.length) {
    const len = dv.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const end = pos + 12 + len; // length, type, data, CRC
    if (end > bytes.length) {
      return `truncated PNG: chunk ${type} at byte ${pos} needs ${end} bytes, the file has ` +
        `${bytes.length}`;
    }
    if (type === "IEND") return null;
    pos = end;
  }
  return `truncated PNG: the file ends at byte ${bytes.length} before the IEND chunk`;
}

/**
 * Reads and decodes an image file.
 * @throws DataError when the file is missing, unreadable, too large or not a decodable image
 */
export async function readImage(path: string): Promise<DecodedImage> {
  return decodeImage(await readFileChecked(path, MAX_FILE_BYTES), path);
}

/**
 * Reads a whole file within a byte bound (lib/io/bounded.ts: regular files only, the size
 * checked before reading and while reading), turning every failure into a DataError.
 * @param maxBytes refuse files larger than this before reading them
 * @param what what the file is, for the message (`... accepted for <what>`)
 */
export async function readFileChecked(
  path: string,
  maxBytes: number,
  what = "image files",
): Promise<Uint8Array> {
  try {
    return await readFileBounded(path, maxBytes, what);
  } catch (e) {
    if (e instanceof BoundedReadError) throw new DataError(path, e.problem);
    throw new DataError(path, `cannot read: ${describeError(e)}`);
  }
}

function checkDims(path: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new DataError(path, `invalid image dimensions ${width}x${height}`);
  }
  if (width * height > MAX_PIXELS) {
    throw new DataError(
      path,
      `image dimensions ${width}x${height} exceed the limit of ${MAX_PIXELS} pixels`,
    );
  }
}

/**
 * Refuses an image whose decoded pixels would take more than {@link MAX_DECODED_BYTES}, from
 * the sizes its header declares, before anything is decoded.
 * @param layout the decoded layout in words, for the message ("RGBA 16-bit")
 */
function checkDecodedBytes(
  path: string,
  width: number,
  height: number,
  bytesPerPixel: number,
  layout: string,
): void {
  checkDims(path, width, height);
  const bytes = width * height * bytesPerPixel;
  if (bytes > MAX_DECODED_BYTES) {
    throw new DataError(
      path,
      `image is ${width}x${height} ${layout}: decoding it needs ${fmtBytes(bytes)}, more than ` +
        `the ${fmtBytes(MAX_DECODED_BYTES)} accepted for one decoded image`,
    );
  }
}

function decodePngImage(bytes: Uint8Array, path: string): DecodedImage {
  // IHDR must be the first chunk: signature(8) length(4) "IHDR"(4) width(4) height(4). Reading
  // the size here lets us refuse huge images before fast-png allocates their buffers.
  if (bytes.length < 33) throw new DataError(path, "truncated PNG (no complete IHDR chunk)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]) !== "IHDR") {
    throw new DataError(path, "corrupt PNG: first chunk is not IHDR");
  }
  // What the decode ends with: palette and grey+alpha images are widened to RGB(A) below,
  // 16-bit samples stay 2 bytes, fewer than 8 bits become 1 byte.
  const bitDepth = bytes[24], colour = bytes[25];
  const PNG_LAYOUT: Record<number, [number, string]> = {
    0: [1, "grey"],
    2: [3, "RGB"],
    3: [4, "palette (decoded to RGBA)"],
    4: [4, "grey+alpha (decoded to RGBA)"],
    6: [4, "RGBA"],
  };
  const layout = PNG_LAYOUT[colour];
  if (!layout || ![1, 2, 4, 8, 16].includes(bitDepth)) {
    throw new DataError(path, `corrupt PNG: colour type ${colour} with bit depth ${bitDepth}`);
  }
  const sampleBytes = bitDepth === 16 ? 2 : 1;
  checkDecodedBytes(
    path,
    dv.getUint32(16),
    dv.getUint32(20),
    layout[0] * sampleBytes,
    `${layout[1]} ${bitDepth}-bit`,
  );

  const png = decodePng(bytes, { checkCrc: true });
  const { width, height, depth } = png;
  checkDims(path, width, height);
  if (png.palette) {
    // Indexed colour: expand through the palette (RGB, or RGBA when a tRNS chunk is present).
    const rgb = convertIndexedToRgb(png);
    const channels = png.palette[0]?.length === 4 ? 4 : 3;
    return { width, height, channels, data: rgb };
  }
  let data = png.data instanceof Uint8ClampedArray
    ? new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length)
    : png.data;
  let channels = png.channels;
  if (depth < 8) {
    // fast-png leaves 1/2/4-bit greys packed per row; expand to 8-bit the way libpng does.
    data = unpackLowDepthGrey(data as Uint8Array, width, height, depth);
  }
  if (channels === 2) {
    // Grey+alpha has no slot in our layout: widen to RGBA so no information is lost.
    data = greyAlphaToRgba(data, width * height);
    channels = 4;
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new DataError(path, `unsupported PNG channel count ${channels}`);
  }
  return { width, height, channels, data };
}

function unpackLowDepthGrey(
  packed: Uint8Array,
  width: number,
  height: number,
  depth: number,
): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const maxVal = (1 << depth) - 1;
  const scale = 255 / maxVal;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const byte = packed[y * rowBytes + (bit >> 3)];
      const v = (byte >> (8 - depth - (bit & 7))) & maxVal;
      out[y * width + x] = Math.round(v * scale);
    }
  }
  return out;
}

function greyAlphaToRgba<T extends Uint8Array | Uint16Array>(src: T, n: number): T {
  const out = new (src.constructor as { new (n: number): T })(n * 4);
  for (let i = 0; i < n; i++) {
    const g = src[2 * i];
    out[4 * i] = g;
    out[4 * i + 1] = g;
    out[4 * i + 2] = g;
    out[4 * i + 3] = src[2 * i + 1];
  }
  return out;
}

/**
 * Bytes per value of the TIFF field types 1-13; 0 for the types UTIF does not read either (6,
 * SBYTE, and anything past 13), whose entries are skipped as UTIF skips them.
 */
const TIFF_TYPE_BYTES = [0, 1, 1, 2, 4, 8, 0, 1, 2, 4, 8, 4, 8, 4];

/**
 * The first image directory of a TIFF in the form UTIF's decodeImage takes (`{ t256: [width],
 * ... }`, values as UTIF.decode would give them), read here instead of by UTIF.decode, which
 * trusts the file: it reads as many values as an entry claims (billions: gigabytes of arrays,
 * seconds per entry), follows the chain of directories without a cycle check, and recurses into
 * EXIF, SubIFD and maker-note directories. Here every entry must lie inside the file, and only
 * the first directory, the image itself, is read.
 * @throws DataError when an entry runs past the end of the file
 */
function readTiffDirectory(bytes: Uint8Array, path: string): Record<string, unknown> {
  const len = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = bytes[0] === 0x49;
  // tiffTruncation (run first) checked the header and that the directory's entries are there.
  const ifd = dv.getUint32(4, le);
  const count = dv.getUint16(ifd, le);
  const out: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + 12 * i;
    const tagId = dv.getUint16(e, le), type = dv.getUint16(e + 2, le);
    const n = dv.getUint32(e + 4, le);
    const w = TIFF_TYPE_BYTES[type] ?? 0;
    if (w === 0 || n === 0) continue;
    const size = n * w;
    const at = size <= 4 ? e + 8 : dv.getUint32(e + 8, le);
    if (at + size > len) {
      throw new DataError(
        path,
        `truncated TIFF: tag ${tagId} (${n} values at byte ${at}) runs past the end of the file ` +
          `(${len} bytes)`,
      );
    }
    let values: unknown;
    if (type === 1 || type === 7) values = bytes.subarray(at, at + n);
    else if (type === 2) {
      values = [String.fromCharCode(...bytes.subarray(at, at + Math.min(n - 1, 4096)))];
    } else {
      const read = (k: number): number | number[] => {
        const o = at + k * w;
        switch (type) {
          case 3:
            return dv.getUint16(o, le);
          case 8:
            return dv.getInt16(o, le);
          case 4:
          case 13:
            return dv.getUint32(o, le);
          case 9:
            return dv.getInt32(o, le);
          case 11:
            return dv.getFloat32(o, le);
          case 12:
            return dv.getFloat64(o, le);
          case 5:
            return [dv.getUint32(o, le), dv.getUint32(o + 4, le)];
          default: // 10: signed rational
            return [dv.getInt32(o, le), dv.getInt32(o + 4, le)];
        }
      };
      values = Array.from({ length: n }, (_, k) => read(k));
    }
    // Keys are "t" and digits: no entry can name a prototype property.
    out[`t${tagId}`] = values;
  }
  return out;
}

/** The first value of a TIFF tag as UTIF stores it (an array), or `dflt` when absent. */
function tag(ifd: Record<string, unknown>, id: number, dflt: number): number {
  const v = ifd[`t${id}`];
  if (v === undefined || v === null) return dflt;
  const first = Array.isArray(v) || ArrayBuffer.isView(v) ? (v as ArrayLike<number>)[0] : v;
  return typeof first === "number" ? first : NaN;
}

function decodeTiffImage(bytes: Uint8Array, path: string): DecodedImage {
  // UTIF wants a standalone ArrayBuffer; Deno.readFile's array owns its buffer, but a subarray
  // handed in by a caller might not.
  const buf = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes.buffer as ArrayBuffer
    : bytes.slice().buffer;
  // The first directory is the full-resolution page; later ones are pages or thumbnails.
  const ifd = readTiffDirectory(new Uint8Array(buf), path);
  if (ifd.t256 === undefined || ifd.t257 === undefined) {
    throw new DataError(path, "TIFF without an image directory (no width/height tags)");
  }
  const width = tag(ifd, 256, NaN);
  const height = tag(ifd, 257, NaN);
  // Only the directory is read so far; check the size before UTIF decompresses pixels.
  checkDims(path, width, height);
  const spp = tag(ifd, 277, 1);
  const bps = tag(ifd, 258, 1);
  const photometric = tag(ifd, 262, -1);
  const planar = tag(ifd, 284, 1);
  if (!(spp >= 1 && spp <= 16) || !(bps >= 1 && bps <= 64)) {
    throw new DataError(path, `implausible TIFF sample layout: ${spp} samples of ${bps} bits`);
  }
  // UTIF holds the samples as stored; all but the 8-bit cases below are also converted to RGBA.
  const direct = bps === 8 && planar === 1 &&
    ((photometric === 1 && spp === 1) || (photometric === 2 && (spp === 3 || spp === 4)));
  checkDecodedBytes(
    path,
    width,
    height,
    spp * Math.ceil(bps / 8) + (direct ? 0 : 4),
    `${spp} x ${bps}-bit samples${direct ? "" : " (and RGBA 8-bit)"}`,
  );
  const image = ifd as unknown as Parameters<typeof UTIF.decodeImage>[1];
  UTIF.decodeImage(buf, image);
  const raw = image.data;
  if (!(raw instanceof Uint8Array)) throw new DataError(path, "TIFF pixel data missing");

  // Common 8-bit chunky cases are taken as they are: exact, and no RGBA round trip.
  if (bps === 8 && planar === 1) {
    if (photometric === 1 && spp === 1) return { width, height, channels: 1, data: raw };
    if (photometric === 2 && (spp === 3 || spp === 4)) {
      return { width, height, channels: spp, data: raw };
    }
  }
  // Everything else (palette, WhiteIsZero, 16-bit, CMYK, YCbCr...) goes through UTIF's own
  // conversion to 8-bit RGBA.
  return { width, height, channels: 4, data: UTIF.toRGBA8(image) };
}

/**
 * The size and component count a JPEG's frame header (SOFn) declares, found by walking the
 * marker segments before the first scan; null when there is none.
 */
export function jpegFrame(
  bytes: Uint8Array,
): { width: number; height: number; components: number } | null {
  let pos = 2; // past SOI
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) return null;
    const marker = bytes[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2; // markers without a length
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null; // a scan (or the end) before any frame
    const len = (bytes[pos + 2] << 8) | bytes[pos + 3];
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
      marker !== 0xcc;
    if (isFrame) {
      if (pos + 10 > bytes.length) return null;
      return {
        height: (bytes[pos + 5] << 8) | bytes[pos + 6],
        width: (bytes[pos + 7] << 8) | bytes[pos + 8],
        components: bytes[pos + 9],
      };
    }
    pos += 2 + len;
  }
  return null;
}

function decodeJpegImage(bytes: Uint8Array, path: string): DecodedImage {
  // The output is RGB 8-bit; jpeg-js also keeps 16-bit coefficients per component, which its
  // own memory cap below bounds.
  const frame = jpegFrame(bytes);
  if (frame) {
    checkDecodedBytes(path, frame.width, frame.height, 3, "RGB 8-bit");
  }
  const img = jpegJs.decode(bytes, {
    useTArray: true,
    formatAsRGBA: false,
    // jpeg-js checks these from the frame header before allocating.
    maxResolutionInMP: MAX_PIXELS / 1e6,
    maxMemoryUsageInMB: (4 * MAX_DECODED_BYTES) / 2 ** 20,
  });
  checkDims(path, img.width, img.height);
  // jpeg-js always delivers RGB when formatAsRGBA is false (grey is replicated).
  return { width: img.width, height: img.height, channels: RGB_CHANNELS, data: img.data };
}
