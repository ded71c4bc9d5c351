/**
 * The fuzz driver of tests/fuzz_test.ts (issue 15): seeded mutations of every input format a
 * user hands the tool, each fed to the function that reads it, in this one process so that a
 * thousand cases take seconds. Run as a subprocess under watch (tests/watch.ts), so its peak
 * memory is measured and a hang is killed:
 *
 * ```
 * deno run -A tests/fuzz_driver.ts WORKDIR [SEED] [SCALE]
 * ```
 *
 * Formats and what reads them: experiment YAML (loadExperiment, from a file: bytes, UTF-8,
 * YAML, schema), xlsx text tables (parseXlsx + textTableOf), PNG, TIFF and JPEG images
 * (decodeImage + the reference preprocessing), safetensors checkpoints (matchStateDict) and the
 * trainer state of a last.safetensors (`--resume` through runExperiment, on a fresh copy of an
 * interrupted tiny run per case). Mutations: bit flips, interesting bytes and 32-bit values at
 * random offsets (sizes, lengths, counts), truncation, cut, duplicated and inserted chunks; and,
 * per format, structure-aware ones that get past the first check: PNG chunks with their CRCs
 * recomputed, xlsx XML rezipped with correct CRCs, safetensors headers edited as JSON,
 * YAML edited as text, the trainer state's JSON fields replaced.
 *
 * Every case ends one of three ways: read ("accepted": the mutation left a valid input), refused
 * with an error the CLIs report as bad input (lib/cli/common.ts isInputError: exit 2, one
 * message), or anything else, which is a bug (an internal error: exit 1 with a stack trace).
 * A case slower than {@link SLOW_MS} is a bug too. The last line of stdout is the JSON report;
 * `WORKDIR/current` names the case in progress, for a run killed by its watcher.
 */
import { join } from "node:path";
import { isInputError } from "../lib/cli/common.ts";
import { loadExperiment, resolveExperimentText } from "../lib/config/load.ts";
import { decodeImage } from "../lib/data/codecs.ts";
import { preprocessImage, preprocessMask } from "../lib/data/preprocess.ts";
import { buildXlsx } from "../lib/data/xlsx_write.ts";
import { parseXlsx, textTableOf } from "../lib/data/xlsx.ts";
import { encodePng, jpegJs, UTIF, zipSync } from "../lib/deps.ts";
import { matchStateDict } from "../lib/io/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../lib/io/safetensors.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { concat, crc32 } from "./hostile.ts";

/** A case slower than this is reported (every input here is a few KiB). */
export const SLOW_MS = 5000;

/** A small seeded generator (mulberry32). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

const INTERESTING = [
  0,
  1,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x7fff,
  0xffff,
  0x10000,
  0x4000,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

/** 1-4 byte-level mutations (see the module comment); the result is at most ~4x longer. */
export function mutateBytes(r: Rng, input: Uint8Array): Uint8Array {
  let b: Uint8Array = input.slice();
  const ops = 1 + r.int(4);
  for (let k = 0; k < ops; k++) {
    const n = b.length;
    const at = n ? r.int(n) : 0;
    switch (r.int(8)) {
      case 0: // bit flips
        for (let i = 0, m = 1 + r.int(8); i < m && n; i++) b[r.int(n)] ^= 1 << r.int(8);
        break;
      case 1: // an interesting byte
        if (n) b[at] = r.pick([0, 0xff, 0x7f, 0x80, 0x20, 0x0a, 0x3c, 0x22, r.int(256)]);
        break;
      case 2: { // an interesting 32-bit value, either byte order (sizes, lengths, counts)
        if (n < 4) break;
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        dv.setUint32(Math.min(at, n - 4), r.pick(INTERESTING), r.int(2) === 0);
        break;
      }
      case 3: // truncation
        b = b.slice(0, at);
        break;
      case 4: { // cut a chunk
        const len = r.int(Math.max(1, n >> 2));
        b = concat([b.subarray(0, at), b.subarray(at + len)]);
        break;
      }
      case 5: { // duplicate a chunk, up to 16 times
        if (b.length > 4 * input.length + 65536) break;
        const len = 1 + r.int(Math.max(1, Math.min(256, n - at)));
        const chunk = b.subarray(at, at + len);
        const times = 1 + r.int(16);
        b = concat([b.subarray(0, at), ...Array(times).fill(chunk), b.subarray(at)]);
        break;
      }
      case 6: { // random bytes inserted
        const ins = Uint8Array.from({ length: 1 + r.int(16) }, () => r.int(256));
        b = concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      default: // overwrite a run with one byte value
        b.fill(r.pick([0, 0xff, r.int(256)]), at, at + 1 + r.int(64));
    }
  }
  return b;
}

/** YAML-aware edits: values, structure, aliases, tags, bytes that are not UTF-8. */
export function mutateYamlText(r: Rng, text: string): Uint8Array {
  const lines = text.split("\n");
  const i = r.int(lines.length);
  const VALUES = [
    "1e308",
    "-1",
    "0",
    "999999999999999999999",
    ".nan",
    ".inf",
    "null",
    "~",
    "true",
    '"${HOME}"',
    "[".repeat(200) + "]".repeat(200),
    "{a: {b: {c: {d: {e: 1}}}}}",
    "&x [1, 2]",
    "*x",
    "!!binary aGVsbG8=",
    "!js/function x",
    '"' + "x".repeat(5000) + '"',
    "|\n  block\n  text",
    "__proto__",
    "0x10",
    "1_000",
  ];
  switch (r.int(7)) {
    case 0: // replace a value
      lines[i] = lines[i].replace(/:\s.*$/, `: ${r.pick(VALUES)}`);
      break;
    case 1: // duplicate a line (duplicate keys)
      lines.splice(i, 0, lines[i]);
      break;
    case 2: // delete a line
      lines.splice(i, 1);
      break;
    case 3: // break indentation
      lines[i] = r.pick(["\t", " ", "   ", ""]) + lines[i].trimStart();
      break;
    case 4: // a new key somewhere
      lines.splice(i, 0, r.pick(["__proto__: {polluted: 1}", "<<: {seed: 1}", "extends: x.yaml"]));
      break;
    case 5: // a long flow sequence (many keys, deep nesting)
      lines.splice(i, 0, `k: [${Array.from({ length: 2000 }, (_, k) => `{a${k}: ${k}}`)}]`);
      break;
    default: { // a byte that is not UTF-8, or a NUL, in the text
      const b = new TextEncoder().encode(lines.join("\n"));
      const at = r.int(b.length + 1);
      return concat([
        b.subarray(0, at),
        new Uint8Array([r.pick([0xff, 0xc0, 0xed, 0x80, 0])]),
        b.subarray(at),
      ]);
    }
  }
  return new TextEncoder().encode(lines.join("\n"));
}

/** Recomputes the CRC of every chunk of a PNG that can still be walked. */
function fixPngCrcs(b: Uint8Array): Uint8Array {
  const out = b.slice();
  const dv = new DataView(out.buffer);
  for (let p = 8; p + 12 <= out.length;) {
    const len = dv.getUint32(p);
    if (p + 12 + len > out.length) break;
    dv.setUint32(p + 8 + len, crc32(out.subarray(p + 4, p + 8 + len)));
    p += 12 + len;
  }
  return out;
}

/** Edits a safetensors header as JSON (numbers, dtypes, names) and re-encodes its length. */
function mutateSafetensorsHeader(r: Rng, b: Uint8Array): Uint8Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const hl = Number(dv.getBigUint64(0, true));
  let json = new TextDecoder().decode(b.subarray(8, 8 + hl));
  const edits = [
    () => (json = json.replace(/\d+/, String(r.pick(INTERESTING)))),
    () => (json = json.replace(/\d+(?=\])/, String(2 ** 53))),
    () => (json = json.replace(/"F32"/, r.pick(['"F16"', '"I64"', '"U8"', '"X9"', "null", "[]"]))),
    () => (json = json.replace(
      /"shape":\[[^\]]*\]/,
      r.pick([
        '"shape":[-1]',
        '"shape":[1e400]',
        '"shape":{}',
        '"shape":[1,1,1,1,1,1,1,1,1,1,1,1]',
      ]),
    )),
    () => (json = json.replace(
      "{",
      `{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},`,
    )),
    () => (json = json.replace(/"data_offsets":\[\d+,\d+\]/, '"data_offsets":[0,0]')),
    () => (json = "[".repeat(5000) + "]".repeat(5000)),
    () => (json = json.replace(/"trainer_state":"[^"]*"/, '"trainer_state":"{}"')),
  ];
  r.pick(edits)();
  const hb = new TextEncoder().encode(json);
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(hb.length), true);
  return concat([head, hb, b.subarray(8 + hl)]);
}

/** Replaces trainer_state JSON fields (and other metadata) of a last.safetensors. */
function mutateTrainerMeta(r: Rng, meta: Map<string, string>): Map<string, string> {
  const out = new Map(meta);
  let st: Record<string, unknown>;
  try {
    st = JSON.parse(out.get("trainer_state") ?? "{}");
  } catch {
    st = {};
  }
  const keys = Object.keys(st);
  const WEIRD: unknown[] = [
    -1,
    0,
    1e308,
    -1e308,
    0.5,
    2 ** 53,
    2 ** 31,
    null,
    "3",
    true,
    [],
    {},
    [1, 2],
  ];
  switch (r.int(6)) {
    case 0:
    case 1: // a field gets a strange value
      if (keys.length) st[r.pick(keys)] = r.pick(WEIRD);
      break;
    case 2: // a field goes missing
      if (keys.length) delete st[r.pick(keys)];
      break;
    case 3: // an unknown field, or a prototype key
      st[r.pick(["extra", "__proto__", "constructor"])] = r.pick(WEIRD);
      break;
    case 4: { // not JSON, or not an object
      out.set("trainer_state", r.pick(["", "{", "null", "[]", "1", '"x"', "{".repeat(3000)]));
      return out;
    }
    default: { // the other metadata
      const k = r.pick([...out.keys()]);
      if (r.int(2)) out.delete(k);
      else out.set(k, r.pick(["", "x", "lvit-deno-run-v0", "0".repeat(64)]));
      return out;
    }
  }
  out.set("trainer_state", JSON.stringify(st));
  return out;
}

/** The outcome of one case. */
type Outcome = "accepted" | "refused";

/** One bug: a case that ended in an internal error, or took too long. */
export interface Bug {
  format: string;
  case: number;
  error: string;
  ms: number;
}

/** Per format: cases run, accepted, refused, the bugs and the slowest case. */
export interface FormatReport {
  cases: number;
  accepted: number;
  refused: number;
  bugs: Bug[];
  slowestMs: number;
}

/** The driver's report (the last line of its stdout). */
export interface FuzzReport {
  seed: number;
  scale: number;
  formats: Record<string, FormatReport>;
  /** VmHWM of this process at the end, bytes (null outside Linux). */
  peakBytes: number | null;
  seconds: number;
}

async function peakOfSelf(): Promise<number | null> {
  try {
    const s = await Deno.readTextFile("/proc/self/status");
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(s)?.[1]) * 1024;
  } catch {
    return null;
  }
}

/** Runs `n` cases of one format: `make` builds the input of case k, `read` reads it. */
async function fuzzFormat(
  work: string,
  format: string,
  n: number,
  make: (k: number) => Uint8Array,
  read: (b: Uint8Array, k: number) => Promise<unknown> | unknown,
): Promise<FormatReport> {
  const rep: FormatReport = { cases: n, accepted: 0, refused: 0, bugs: [], slowestMs: 0 };
  for (let k = 0; k < n; k++) {
    const input = make(k);
    await Deno.writeTextFile(join(work, "current"), `${format} case ${k}\n`);
    const t = performance.now();
    let outcome: Outcome | null = null;
    let error = "";
    try {
      await read(input, k);
      outcome = "accepted";
    } catch (e) {
      if (isInputError(e)) outcome = "refused";
      else error = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
    }
    const ms = performance.now() - t;
    rep.slowestMs = Math.max(rep.slowestMs, ms);
    if (outcome === "accepted") rep.accepted++;
    else if (outcome === "refused") rep.refused++;
    if (outcome === null || ms > SLOW_MS) {
      rep.bugs.push({
        format,
        case: k,
        error: outcome === null ? error.slice(0, 2000) : `took ${ms.toFixed(0)} ms`,
        ms,
      });
      const bad = join(work, `bug-${format}-${k}.bin`);
      await Deno.writeFile(bad, input);
    }
  }
  return rep;
}

/** The base inputs (valid files) the mutations start from. */
export function bases() {
  const enc = new TextEncoder();
  const rgb = new Uint8Array(16 * 12 * 3).map((_, i) => (i * 37) & 255);
  const grey16 = new Uint16Array(9 * 7).map((_, i) => i * 997);
  const rows = Array.from({ length: 6 }, (_, i) => [
    `mask_synth_0000${i}.png`,
    `Unilateral pulmonary infection, lower left lung, ${i}.`,
  ]);
  const tensors = new Map([
    ["conv.weight", { shape: [2, 3], data: new Float32Array([1, -2, 3, 0.5, 0, 7]) }],
    ["bn.num_batches_tracked", { shape: [1], data: new Float32Array([12]), dtype: "I64" as const }],
    ["bias", { shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) }],
  ]);
  const yaml = [
    "name: fuzz",
    "variant: v",
    "seed: 3",
    "backend: cpu",
    "data: { dataset: synth, synth: { train: 4, val: 2, test: 2 } }",
    "text: { encoder: builtin }",
    "model:",
    "  name: lvit-t",
    "  image_size: 64",
    "  base_channels: 8",
    "train:",
    "  epochs: 2",
    "  lr: 0.001",
    "  schedule: { kind: cosine-restarts, t0: 10, eta_min: 0.0001 }",
    "eval: { overlays: 2 }",
    "",
  ].join("\n");
  return {
    yaml,
    xlsx: buildXlsx(["Image", "Description"], rows),
    sheetXml: enc.encode(
      `<worksheet><sheetData>${
        rows.map((r, i) =>
          `<row r="${i + 1}"><c t="inlineStr"><is><t>${r[0]}</t></is></c>` +
          `<c t="inlineStr"><is><t>${r[1]}</t></is></c></row>`
        ).join("")
      }</sheetData></worksheet>`,
    ),
    pngs: [
      encodePng({ width: 16, height: 12, channels: 3, data: rgb }),
      encodePng({ width: 9, height: 7, channels: 1, depth: 16, data: grey16 }),
      encodePng({ width: 5, height: 4, channels: 4, data: new Uint8Array(80).fill(200) }),
    ],
    tiff: new Uint8Array(UTIF.encodeImage(new Uint8Array(12 * 10 * 4).fill(90), 12, 10)),
    jpeg: new Uint8Array(
      jpegJs.encode({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 4).fill(128) }, 80)
        .data,
    ),
    tensors,
    safetensors: encodeSafetensors(tensors, { format: "x", note: "fuzz" }),
  };
}

/**
 * A tiny experiment for the trainer-state cases (U-Net 4-8 at 32, two epochs); also
 * tests/runner_cleanup_test.ts's.
 */
export function tinyExperiment(cache: string): string {
  return [
    "name: fuzz-state",
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 4, val: 2, test: 2 }, cache_dir: ${cache} }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    "train: { epochs: 2, batch: 2, lr: 0.01 }",
    "eval: { overlays: 1, save_predictions: false }",
    "",
  ].join("\n");
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(join(from, e.name), join(to, e.name));
    else if (e.isFile) await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** Runs every format; see the module comment. */
export async function runFuzz(work: string, seed: number, scale: number): Promise<FuzzReport> {
  const t0 = performance.now();
  const b = bases();
  const r = new Rng(seed);
  const n = (k: number) => Math.max(1, Math.round(k * scale));
  const formats: Record<string, FormatReport> = {};
  const image = (bytes: Uint8Array) => {
    const img = decodeImage(bytes, "f.img");
    preprocessImage(img, 16);
    preprocessMask(img, 16);
  };

  const yamlPath = join(work, "e.yaml");
  formats.yaml = await fuzzFormat(
    work,
    "yaml",
    n(300),
    () => r.int(2) ? mutateYamlText(r, b.yaml) : mutateBytes(r, new TextEncoder().encode(b.yaml)),
    async (bytes) => {
      await Deno.writeFile(yamlPath, bytes);
      await loadExperiment(yamlPath);
    },
  );

  formats.xlsx = await fuzzFormat(work, "xlsx", n(300), () => {
    if (r.int(2)) return mutateBytes(r, b.xlsx);
    // Past the zip layer: a damaged sheet in a well-formed archive.
    const sheet = mutateBytes(r, b.sheetXml);
    return zipSync({
      "xl/workbook.xml": new TextEncoder().encode(
        `<workbook><sheets><sheet name="s" sheetId="1"/></sheets></workbook>`,
      ),
      "xl/worksheets/sheet1.xml": sheet,
    });
  }, (bytes) => textTableOf(parseXlsx(bytes, "f.xlsx"), "f.xlsx"));

  formats.png = await fuzzFormat(work, "png", n(300), () => {
    const m = mutateBytes(r, r.pick(b.pngs));
    return r.int(2) ? fixPngCrcs(m) : m;
  }, image);
  formats.tiff = await fuzzFormat(work, "tiff", n(200), () => mutateBytes(r, b.tiff), image);
  formats.jpeg = await fuzzFormat(work, "jpeg", n(200), () => mutateBytes(r, b.jpeg), image);

  const expected = new Map([...b.tensors].map(([k, t]) => [k, t.shape]));
  formats.safetensors = await fuzzFormat(
    work,
    "safetensors",
    n(300),
    () => r.int(2) ? mutateBytes(r, b.safetensors) : mutateSafetensorsHeader(r, b.safetensors),
    (bytes) => matchStateDict("f.safetensors", bytes, expected),
  );

  // The trainer state: an interrupted tiny run, then --resume from a damaged last.safetensors,
  // each case on a fresh copy of the run folder.
  const cache = join(work, "cache");
  const text = tinyExperiment(cache);
  const exp = resolveExperimentText(join(work, "state.yaml"), text);
  const quiet = { progress: false, signals: false, log: () => {} };
  const pristine = join(work, "pristine");
  const first = await runExperiment(exp, { ...quiet, out: pristine, stopAfterSteps: 3 });
  if (!first.interrupted) throw new Error("the tiny run was to be interrupted");
  const rel = first.dir.slice(pristine.length + 1);
  const last = await Deno.readFile(join(first.dir, "checkpoints", "last.safetensors"));
  const decoded = decodeSafetensors(last, "last.safetensors");
  const lastTensors = new Map(
    [...decoded.tensors].map(([k, t]) => [k, {
      shape: t.shape,
      data: t.data,
      dtype: t.dtype === "I64" ? "I64" as const : "F32" as const,
    }]),
  );
  formats.trainer_state = await fuzzFormat(work, "trainer_state", n(30), () => {
    const meta = mutateTrainerMeta(r, decoded.metadata);
    return encodeSafetensors(lastTensors, Object.fromEntries(meta));
  }, async (bytes, k) => {
    const out = join(work, `resume-${k}`);
    await copyTree(pristine, out);
    await Deno.writeFile(join(out, rel, "checkpoints", "last.safetensors"), bytes);
    try {
      const res = await runExperiment(exp, { ...quiet, out, resume: true });
      // Nothing asked it to stop: an "interrupted" result would be exit 130 without a signal.
      if (res.interrupted || !res.summary) {
        throw new Error(`resume returned interrupted=${res.interrupted} without a stop request`);
      }
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  });

  return {
    seed,
    scale,
    formats,
    peakBytes: await peakOfSelf(),
    seconds: (performance.now() - t0) / 1000,
  };
}

if (import.meta.main) {
  const [work, seed = "15", scale = "1"] = Deno.args;
  const report = await runFuzz(work, Number(seed), Number(scale));
  console.log(JSON.stringify(report));
}
