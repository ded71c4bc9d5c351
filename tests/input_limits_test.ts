/**
 * Issue 15, class 3: every input is bounded in bytes (and so in time) before it is read. Each
 * case of the issue first (an xlsx zip bomb, a 16384 x 16384 RGBA 16-bit PNG, `extends:
 * /dev/zero`, a 20 GiB best.safetensors), through the command a user would run, in a
 * subprocess whose memory is watched (tests/watch.ts: killed past the bound); then more of the
 * same class: zip entries that lie about their size or CRC, the decoded-bytes limit below the
 * pixel limit, TIFF and JPEG headers, FIFOs and oversized files where a file is expected, and
 * the caches. Every refusal is exit 2 with one message naming the file and the limit, no stack
 * trace. The hostile files are built in memory (tests/hostile.ts); the large ones are sparse.
 */
import { join } from "node:path";
import { encodePng, jpegJs, UTIF } from "../lib/deps.ts";
import { decodeImage, MAX_DECODED_BYTES } from "../lib/data/codecs.ts";
import { DataError } from "../lib/data/errors.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { cacheKey, getOrCompute } from "../lib/data/text_cache.ts";
import { parseXlsx } from "../lib/data/xlsx.ts";
import { BoundedReadError, readFileBounded } from "../lib/io/bounded.ts";
import { CheckpointError, loadCheckpoint } from "../lib/io/checkpoint.ts";
import { assert, expectError, expectRejection } from "./assert.ts";
import {
  concat,
  crc32,
  deflateZeros,
  inlineSheet,
  storedBlock,
  storedEntry,
  WORKBOOK,
  zeroPng,
  zipFile,
} from "./hostile.ts";
import { assertNoStackTrace, withTmp } from "./process.ts";
import { assertPeakBelow, describeRun, runWatched, type Watched } from "./watch.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLI = (name: string) => join(ROOT, "lib/cli", name);
/** Well above what the refusing commands take (~100-200 MiB), far below the bombs' needs. */
const MEMORY = 768 * 2 ** 20;
const MiB = 2 ** 20;

/** Exit 2, every needle in the output, no stack trace, within the memory bound. */
function refused(what: string, r: Watched, ...needles: string[]): void {
  const why = `${what}: ${describeRun(r)}`;
  assert(r.killed === null, why);
  assert(r.code === 2, why);
  for (const n of needles) assert(r.text.includes(n), `${what}: lacks '${n}'\n${why}`);
  assertNoStackTrace(r.text);
  assertPeakBelow(r, MEMORY, what);
}

/** A FIFO at `path`, or false where mkfifo is not available. */
async function mkfifo(path: string): Promise<boolean> {
  try {
    return (await new Deno.Command("mkfifo", { args: [path] }).output()).success;
  } catch {
    return false;
  }
}

/** A sparse file of `bytes` (nothing is written). */
async function sparse(path: string, bytes: number): Promise<void> {
  await Deno.writeFile(path, new Uint8Array(0));
  await Deno.truncate(path, bytes);
}

const TINY = (cache: string) =>
  [
    "name: tiny",
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 4, val: 2, test: 2 }, cache_dir: ${cache} }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    "train: { epochs: 1, batch: 2, lr: 0.01 }",
    "eval: { overlays: 1 }",
  ].join("\n") + "\n";

Deno.test("limits: an xlsx zip bomb (parts of 255 MiB) is refused before inflating, exit 2", async () => {
  await withTmp("lvit-limits-", async (dir) => {
    const root = join(dir, "data");
    await generateSynth({ out: root, train: 3, val: 2, test: 2, size: 32 });
    // The case: every part really inflates to 255 MiB of zeros.
    const bomb = deflateZeros(255 * MiB);
    const part = (name: string) => ({
      name,
      method: 8 as const,
      data: bomb,
      size: 255 * MiB,
      crc: 0, // never reached: the declared size is refused first
    });
    await Deno.writeFile(
      join(root, "Train_Folder/Train_Val_text.xlsx"),
      zipFile([
        storedEntry("xl/workbook.xml", WORKBOOK),
        part("xl/worksheets/sheet1.xml"),
        part("xl/sharedStrings.xml"),
        part("xl/styles.xml"),
      ]),
    );
    const r = await runWatched([CLI("data_check.ts"), root], { maxBytes: MEMORY });
    refused(
      "zip bomb",
      r,
      "Train_Val_text.xlsx: zip part xl/worksheets/sheet1.xml declares 267386880 bytes",
      "33554432 bytes (32 MiB) accepted uncompressed for one xlsx",
    );
    assert(r.ms < 30_000, describeRun(r));
  });
});

Deno.test("limits: zip entries that lie about their size or CRC are refused, at no cost", () => {
  const enc = new TextEncoder();
  const sheet = enc.encode(inlineSheet([["Image", "Description"], ["a.png", "a lesion"]]));
  const xlsx = (entry: ReturnType<typeof storedEntry>) =>
    zipFile([storedEntry("xl/workbook.xml", WORKBOOK), entry]);
  const name = "xl/worksheets/sheet1.xml";
  // Declares the sheet's own size and CRC but inflates to it plus 1 GiB of zeros: fflate's
  // unzipSync inflated all of it (seconds of CPU) and kept the declared prefix, "OK".
  const liar = concat([storedBlock(sheet), deflateZeros(2 ** 30)]);
  const t = performance.now();
  expectError(
    "longer than declared",
    DataError,
    () =>
      parseXlsx(
        xlsx({ name, method: 8, data: liar, size: sheet.length, crc: crc32(sheet) }),
        "l.xlsx",
      ),
    `l.xlsx: zip part ${name} inflates to more than the ${sheet.length} bytes it declares`,
  );
  assert(performance.now() - t < 5000, `took ${performance.now() - t} ms`);
  // Declares more than it holds (fflate zero-padded it).
  const short = concat([storedBlock(sheet), deflateZeros(0)]);
  expectError(
    "shorter than declared",
    DataError,
    () =>
      parseXlsx(
        xlsx({ name, method: 8, data: short, size: sheet.length + 100, crc: crc32(sheet) }),
        "s.xlsx",
      ),
    `inflates to ${sheet.length} bytes but declares ${sheet.length + 100}`,
  );
  // The right size, the wrong CRC: damaged.
  expectError(
    "crc",
    DataError,
    () => parseXlsx(xlsx({ ...storedEntry(name, "x"), data: sheet, size: sheet.length }), "c.xlsx"),
    "fails its CRC-32 check",
  );
  // The same table, honest, still reads.
  const ok = parseXlsx(
    xlsx({ name, method: 8, data: short, size: sheet.length, crc: crc32(sheet) }),
    "ok.xlsx",
  );
  assert(ok.rows[0].get("Description") === "a lesion", "honest table");
});

Deno.test("limits: a 16384x16384 RGBA 16-bit PNG and an 8192x8192 one are refused from the header", async () => {
  await withTmp("lvit-limits-", async (dir) => {
    const root = join(dir, "data");
    await generateSynth({ out: root, train: 3, val: 2, test: 2, size: 32 });
    // The case (13 MB here, 2 GiB of pixels really in the file), and one that passes
    // the pixel limit (2^26) but needs 512 MiB decoded.
    await Deno.writeFile(
      join(root, "Train_Folder/img/synth_00000.png"),
      zeroPng(16384, 16384, 16, 6),
    );
    await Deno.writeFile(join(root, "Val_Folder/img/synth_00003.png"), zeroPng(8192, 8192, 16, 6));
    const r = await runWatched([CLI("data_check.ts"), root], { maxBytes: MEMORY });
    refused(
      "png",
      r,
      "synth_00000.png: image dimensions 16384x16384 exceed the limit of 67108864 pixels",
      "synth_00003.png: image is 8192x8192 RGBA 16-bit: decoding it needs 536870912 bytes " +
        "(512 MiB), more than the 268435456 bytes (256 MiB) accepted for one decoded image",
    );
  });
});

Deno.test("limits: TIFF and JPEG headers are held to the decoded-bytes limit too", () => {
  // A TIFF of 8192x8192 with 4 16-bit samples per pixel: 512 MiB as stored, and UTIF's RGBA
  // copy on top (the directory of a 16x16 one, patched).
  const tif = new Uint8Array(UTIF.encodeImage(new Uint8Array(16 * 16 * 4), 16, 16));
  const dv = new DataView(tif.buffer);
  const le = tif[0] === 0x49;
  const ifd = dv.getUint32(4, le);
  for (let i = 0; i < dv.getUint16(ifd, le); i++) {
    const e = ifd + 2 + 12 * i;
    const t = dv.getUint16(e, le);
    const short = dv.getUint16(e + 2, le) === 3;
    if (t === 256 || t === 257) {
      if (short) dv.setUint16(e + 8, 8192, le);
      else dv.setUint32(e + 8, 8192, le);
    }
    if (t === 258) {
      // BitsPerSample: one short per sample, in place or at an offset.
      const n = dv.getUint32(e + 4, le);
      const at = n * 2 <= 4 ? e + 8 : dv.getUint32(e + 8, le);
      for (let k = 0; k < n; k++) dv.setUint16(at + 2 * k, 16, le);
    }
  }
  const e1 = expectError(
    "tiff",
    DataError,
    () => decodeImage(tif, "t.tif"),
    "t.tif: image is 8192x8192",
  );
  assert(e1.message.includes(`${MAX_DECODED_BYTES} bytes (256 MiB)`), e1.message);
  // A JPEG whose frame header claims 65535 x 65535 (jpeg-js alone would allocate first).
  const jpg = jpegJs.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4) }, 90).data;
  for (let i = 2; i + 9 < jpg.length; i++) {
    if (jpg[i] === 0xff && jpg[i + 1] === 0xc0) {
      jpg.set([0xff, 0xff, 0xff, 0xff], i + 5);
      break;
    }
  }
  expectError(
    "jpeg",
    DataError,
    () => decodeImage(jpg, "j.jpg"),
    "j.jpg: image dimensions 65535x65535",
  );
  // Ordinary images still decode.
  const png = encodePng({ width: 3, height: 2, channels: 3, data: new Uint8Array(18) });
  assert(decodeImage(png, "ok.png").width === 3, "plain PNG");
});

Deno.test("limits: extends: /dev/zero and an experiment that is a FIFO are refused at once", async () => {
  await withTmp("lvit-limits-", async (dir) => {
    const e = join(dir, "e.yaml");
    // The case: read whole, /dev/zero never ends.
    await Deno.writeTextFile(e, "extends: /dev/zero\n" + TINY(join(dir, "cache")));
    const r = await runWatched([CLI("run.ts"), e, "--out", join(dir, "runs")], {
      maxBytes: MEMORY,
      timeoutMs: 60_000,
    });
    refused("/dev/zero", r, `${e}:1:10: extends target '/dev/zero'`, "is a character device");
    // A file of more than 16 MiB (sparse), and a FIFO, in place of the experiment itself.
    const big = join(dir, "big.yaml");
    await sparse(big, 17 * MiB);
    const r2 = await runWatched([CLI("run.ts"), big], { maxBytes: MEMORY });
    refused("17 MiB", r2, "big.yaml: file is 17825792 bytes (17 MiB), more than the 16777216");
    const fifo = join(dir, "fifo.yaml");
    if (await mkfifo(fifo)) {
      const r3 = await runWatched([CLI("run.ts"), fifo], { maxBytes: MEMORY, timeoutMs: 30_000 });
      refused("fifo", r3, "fifo.yaml: is a FIFO (named pipe), not a regular file");
    }
  });
});

Deno.test("limits: a 20 GiB best.safetensors (sparse) is refused before reading, exit 2", async () => {
  await withTmp("lvit-limits-", async (dir) => {
    const e = join(dir, "e.yaml"), out = join(dir, "runs");
    await Deno.writeTextFile(e, TINY(join(dir, "cache")));
    const made = await runWatched([CLI("run.ts"), e, "--out", out]);
    assert(made.code === 0, describeRun(made));
    const runDir = /run folder: (\S+)/.exec(made.text)?.[1];
    assert(runDir, made.text);
    // The case: eval reads checkpoints/best.safetensors whole.
    const best = join(runDir, "checkpoints", "best.safetensors");
    await sparse(best, 20 * 2 ** 30);
    const r = await runWatched([CLI("eval.ts"), runDir], { maxBytes: MEMORY, timeoutMs: 60_000 });
    refused(
      "20 GiB",
      r,
      `${best}: file is 21474836480 bytes (20 GiB), more than the 2147483648 bytes (2 GiB) ` +
        "accepted for checkpoints",
    );
    // One more: model.init_from naming a FIFO (opening it would block for ever).
    const fifo = join(dir, "w.safetensors");
    if (await mkfifo(fifo)) {
      const r2 = await runWatched(
        [CLI("run.ts"), e, "--out", join(dir, "runs2"), "--set", `model.init_from=${fifo}`],
        { maxBytes: MEMORY, timeoutMs: 30_000 },
      );
      refused("init_from fifo", r2, `model.init_from: ${fifo}: is a FIFO (named pipe)`);
    }
    await expectRejection(
      "library",
      CheckpointError,
      () => loadCheckpoint(best, new Map()),
      "more than the 2147483648 bytes (2 GiB) accepted for checkpoints",
    );
  });
});

Deno.test("limits: bounded reads stop at the limit; caches never open a FIFO", async () => {
  await withTmp("lvit-limits-", async (dir) => {
    const f = join(dir, "f.bin");
    await Deno.writeFile(f, new Uint8Array(1000).fill(7));
    assert((await readFileBounded(f, 1000, "tests")).length === 1000, "at the limit");
    await expectRejection(
      "over",
      BoundedReadError,
      () => readFileBounded(f, 999, "tests"),
      "file is 1000 bytes, more than the 999 bytes accepted for tests",
    );
    await expectRejection(
      "dev zero",
      BoundedReadError,
      () => readFileBounded("/dev/zero", 10, "x"),
      "character device",
    );
    await expectRejection(
      "folder",
      BoundedReadError,
      () => readFileBounded(dir, 10, "x"),
      "is a folder",
    );
    await Deno.symlink(join(dir, "nowhere"), join(dir, "dangling"));
    const d = await expectRejection(
      "dangling",
      BoundedReadError,
      () => readFileBounded(join(dir, "dangling"), 10, "x"),
      "broken symbolic link",
    );
    assert(d.notFound, "dangling counts as not found");
    // A FIFO where a text-cache file belongs: recomputed and replaced, not opened.
    const cache = join(dir, "cache");
    await Deno.mkdir(cache);
    const key = ["enc", 1, "text"];
    if (await mkfifo(join(cache, `${await cacheKey(key)}.f32`))) {
      const v = await getOrCompute(cache, key, () => new Float32Array([1, 2]), {
        expectedLength: 2,
      });
      assert(v[1] === 2, "computed");
      assert((await Deno.stat(join(cache, `${await cacheKey(key)}.f32`))).isFile, "replaced");
    }
  });
});
