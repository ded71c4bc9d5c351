/**
 * The synthetic QaTa generator: its folder reads back with the LViT reader, masks agree with
 * the sentences (count, side, level), distractors stay out of the mask and out of the named
 * zones, output is a pure function of the seed; plus the xlsx writer and the CLI's usage errors.
 */
import { join } from "node:path";
import { listSplit, loadSample, SPLITS } from "../lib/data/lvit_folder.ts";
import { parseXlsx } from "../lib/data/xlsx.ts";
import { buildXlsx, columnName } from "../lib/data/xlsx_write.ts";
import {
  describeZones,
  generateSynth,
  renderSample,
  type Zone,
  zoneAt,
} from "../lib/data/synth.ts";
import { parseSynthArgs, UsageError } from "../lib/cli/data_synth.ts";
import { assert, expectError, expectRejection } from "./assert.ts";

const SIZE = 64;
const COUNTS = { train: 6, val: 2, test: 2 };
const NUMBERS: Record<string, number> = { one: 1, two: 2, three: 3 };

/** The zones a sentence names, parsed independently of the generator's own code. */
function parseText(text: string): { lateral: string; count: number; zones: Set<string> } {
  const m = /^(Bilateral|Unilateral) pulmonary infection, (one|two|three) infected areas?, (.+)\.$/
    .exec(text);
  assert(m, `sentence shape: ${text}`);
  const zones = new Set<string>();
  for (const part of m[3].split(" and ")) {
    const words = part.split(" ");
    assert(words.length >= 3 && words[words.length - 1] === "lung", `location: ${part}`);
    const side = words[words.length - 2];
    assert(side === "left" || side === "right", `side: ${part}`);
    for (const level of words.slice(0, -2)) {
      assert(["upper", "middle", "lower"].includes(level), `level: ${part}`);
      zones.add(`${level} ${side}`);
    }
  }
  return { lateral: m[1], count: NUMBERS[m[2]], zones };
}

const key = (z: Zone) => `${z.level} ${z.side}`;

/** Centroids of the 4-connected components of a 0/1 mask, in pixel units. */
function components(mask: Float32Array, S: number): { x: number; y: number; n: number }[] {
  const seen = new Uint8Array(S * S);
  const out: { x: number; y: number; n: number }[] = [];
  for (let start = 0; start < S * S; start++) {
    if (!mask[start] || seen[start]) continue;
    const stack = [start];
    seen[start] = 1;
    let sx = 0, sy = 0, n = 0;
    while (stack.length) {
      const p = stack.pop()!;
      const x = p % S, y = (p - x) / S;
      sx += x, sy += y, n++;
      for (const [qx, qy] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]]) {
        const q = qy * S + qx;
        if (qx >= 0 && qx < S && qy >= 0 && qy < S && mask[q] && !seen[q]) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    out.push({ x: sx / n, y: sy / n, n });
  }
  return out;
}

async function filesUnder(dir: string, prefix = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await filesUnder(dir, rel)) out.set(k, v); }
    else out.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

Deno.test("synth: folder reads back as qata; masks match the sentences; distractors excluded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "synth_" });
  try {
    const summary = await generateSynth({ out: join(dir, "a"), seed: 11, ...COUNTS, size: SIZE });
    assert(summary.counts.train === 6 && summary.size === SIZE, "summary");
    let distractors = 0, bilateral = 0, multi = 0;
    for (const split of SPLITS) {
      const samples = await listSplit("qata", split, join(dir, "a"));
      assert(samples.length === COUNTS[split], `${split}: ${samples.length} samples`);
      for (const s of samples) {
        const index = Number(/synth_(\d+)\.png$/.exec(s.key)![1]);
        const { image, mask } = await loadSample(s, SIZE);
        assert(image.length === 3 * SIZE * SIZE, "image shape");
        const parsed = parseText(s.text);
        const comps = components(mask, SIZE);
        assert(comps.length > 0, `${s.key}: mask has lesion pixels`);
        assert(comps.length === parsed.count, `${s.key}: ${comps.length} blobs vs "${s.text}"`);
        const found = new Set<string>();
        for (const c of comps) {
          const z = zoneAt((c.x + 0.5) / SIZE, (c.y + 0.5) / SIZE);
          assert(z, `${s.key}: blob centroid inside a lung`);
          found.add(key(z));
        }
        assert(
          [...parsed.zones].sort().join() === [...found].sort().join(),
          `${s.key}: mask zones ${[...found]} vs text zones ${[...parsed.zones]}`,
        );
        const sides = new Set([...found].map((z) => z.split(" ")[1]));
        assert((sides.size === 2) === (parsed.lateral === "Bilateral"), `${s.key}: laterality`);
        // At most one lesion per lung, so each location word has a fixed token position.
        assert(comps.length === sides.size, `${s.key}: one lesion per lung at most`);
        bilateral += sides.size === 2 ? 1 : 0;
        multi += comps.length > 1 ? 1 : 0;

        // The generator's own record agrees with the files and places distractors elsewhere.
        const r = renderSample(11, index, SIZE);
        assert(r.text === s.text, `${s.key}: rendered text`);
        assert(r.maskPixels.every((v, i) => (v > 0 ? 1 : 0) === mask[i]), `${s.key}: mask file`);
        // As many look-alikes as lesions on average, drawn like them.
        assert(r.distractors.length >= 1 && r.distractors.length <= 3, `${s.key}: distractors`);
        for (const d of r.distractors) {
          distractors++;
          assert(!parsed.zones.has(key(d.zone)), `${s.key}: distractor in a named zone`);
          for (let y = 0; y < SIZE; y++) {
            for (let x = 0; x < SIZE; x++) {
              if (Math.hypot(x + 0.5 - d.x, y + 0.5 - d.y) <= d.radius) {
                assert(mask[y * SIZE + x] === 0, `${s.key}: distractor pixel in the mask`);
              }
            }
          }
          // Inside a lung, so it looks like a lesion and only the text rules it out.
          assert(zoneAt(d.x / SIZE, d.y / SIZE) !== null, `${s.key}: distractor inside a lung`);
        }
      }
    }
    // Seed 11 was checked to cover the interesting cases; keep it honest if the draws change.
    assert(distractors > 0, "some distractors drawn");
    assert(bilateral > 0 && multi > 0, "bilateral and multi-lesion sentences occur");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("synth: same seed gives identical bytes, another seed different ones", async () => {
  const dir = await Deno.makeTempDir({ prefix: "synth_" });
  try {
    const gen = (name: string, seed: number) =>
      generateSynth({ out: join(dir, name), seed, ...COUNTS, size: SIZE });
    await gen("a", 3);
    await gen("b", 3);
    await gen("c", 4);
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((n) => filesUnder(join(dir, n))));
    // 10 images + 10 masks, 2 text tables, synth.json, and LV_loss/ (14 figures + its table).
    assert(a.size === 2 * 10 + 2 + 1 + 15, `file count ${a.size}`);
    const lv = [...a.keys()].filter((n) => n.startsWith("LV_loss/")).sort();
    const figs = Array.from({ length: 14 }, (_, i) => `LV_loss/fig${i + 1}.png`);
    assert(lv.join() === [...figs, "LV_loss/LV_loss.xlsx"].sort().join(), `LV_loss: ${lv}`);
    for (const [name, bytes] of a) {
      assert(b.has(name) && sameBytes(bytes, b.get(name)!), `same seed, same bytes: ${name}`);
    }
    const img = "Train_Folder/img/synth_00000.png";
    assert(!sameBytes(a.get(img)!, c.get(img)!), "different seed, different image");
    assert(!sameBytes(a.get("synth.json")!, c.get("synth.json")!), "different seed, layout");
    // The contrastive set is drawn from the fixed lung geometry: the seed does not change it.
    for (const name of lv) assert(sameBytes(a.get(name)!, c.get(name)!), `seed-free: ${name}`);
    // Refuses to mix with an earlier run's files.
    await expectRejection(
      "non-empty output folder refused",
      Deno.errors.AlreadyExists,
      () => gen("a", 3),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("synth: sentences follow the QaTa template; rendering is fast", () => {
  assert(
    describeZones([{ level: "upper", side: "left" }, { level: "lower", side: "right" }]) ===
      "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
    "bilateral template",
  );
  assert(
    describeZones([{ level: "lower", side: "left" }, { level: "middle", side: "left" }]) ===
      "Unilateral pulmonary infection, two infected areas, middle lower left lung.",
    "unilateral template",
  );
  assert(
    describeZones([{ level: "middle", side: "right" }]) ===
      "Unilateral pulmonary infection, one infected area, middle right lung.",
    "singular",
  );
  renderSample(0, 0, 224); // warm-up
  const t0 = performance.now();
  for (let i = 1; i <= 10; i++) renderSample(0, i, 224);
  const ms = (performance.now() - t0) / 10;
  // Generous bound for slow CI machines; it takes a few ms locally.
  assert(ms < 100, `${ms.toFixed(1)} ms per 224x224 image`);
});

Deno.test("xlsx writer: round-trips through the reader, escapes XML, names columns", () => {
  const rows = [["a&b<c>.png", `"quoted" 'x'`], ["dup", "dup"], ["short"]];
  const r = parseXlsx(buildXlsx(["Image", "Description"], rows), "w.xlsx");
  assert(r.header.join("|") === "Image|Description", "header");
  assert(r.rows.length === 3, "rows");
  assert(r.rows[0].get("Image") === "a&b<c>.png", "escaped key");
  assert(r.rows[0].get("Description") === `"quoted" 'x'`, "escaped quotes");
  assert(r.rows[1].get("Description") === "dup" && r.rows[2].get("Description") === "", "cells");
  assert(
    [0, 25, 26, 701, 702].map(columnName).join() === "A,Z,AA,ZZ,AAA",
    "column names",
  );
  expectError("control characters refused", RangeError, () => buildXlsx(["a"], [["bad\u0001"]]));
});

Deno.test("data:synth CLI: arguments and usage errors", async () => {
  const o = parseSynthArgs(["--out", "/x", "--seed=5", "--size", "96"]);
  assert(o.out === "/x" && o.seed === 5 && o.size === 96 && o.train === undefined, "parsed");
  for (const bad of [[], ["--seed", "1"], ["--out"], ["--out", "d", "--train", "-1"], ["x"]]) {
    expectError(`usage error for ${JSON.stringify(bad)}`, UsageError, () => parseSynthArgs(bad));
  }
  const cli = new URL("../lib/cli/data_synth.ts", import.meta.url).pathname;
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "--allow-env", cli, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const noOut = await run(["--size", "64"]);
  assert(noOut.code === 2, `missing --out exits 2, got ${noOut.code}`);
  const tooSmall = await run(["--out", "/nonexistent/never", "--size", "8"]);
  assert(tooSmall.code === 2, `size 8 exits 2, got ${tooSmall.code}`);
  assert(new TextDecoder().decode(tooSmall.stderr).includes("usage:"), "usage printed");
});

Deno.test("synth: at 64x64 every zone lies in one row and one half of the 16-pixel patch grid", () => {
  // The text enters LViT on a grid of 16-pixel patches; zones that cut across patch rows made the
  // zone words slower to learn, so the geometry keeps them apart (synth.ts module note).
  const S = 64, P = 16;
  const cells = new Map<string, Set<string>>();
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const z = zoneAt((x + 0.5) / S, (y + 0.5) / S);
      if (!z) continue;
      const k = key(z);
      if (!cells.has(k)) cells.set(k, new Set());
      cells.get(k)!.add(`${Math.floor(y / P)} ${x < S / 2 ? "image-left" : "image-right"}`);
    }
  }
  assert(cells.size === 6, `${cells.size} zones`);
  for (const [zone, c] of cells) assert(c.size === 1, `${zone} spans ${[...c].join(" | ")}`);
  const rows = [...cells.values()].map((c) => [...c][0]);
  assert(new Set(rows).size === 6, `zones share a cell: ${rows}`);
});
