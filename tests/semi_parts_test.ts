/**
 * Parts of the semi-supervised setting (lvit-reference.md 3.2), each on its own:
 * - lvLoss: forward against the float64 `lvLossRef`, and its gradient against the float64
 *   reference graph on WebGPU and CPU (`checkOp`) and against central finite differences
 *   (`fdCheck`), on awkward shapes (B = 1 and 3, odd H and W, an all-zero contrastive mask, a
 *   constant p, an all-zero p); plus why eps sits inside the square roots;
 * - semiLoss = segLoss + 0.1 * lvLoss;
 * - EPI updates (hand values, bitwise determinism), pseudo-label binarisation;
 * - contrastive selection by text cosine (ties, zero vectors, the synthetic set's texts);
 * - reading the generated LV_loss folder, and every damaged-folder error as a DataError.
 *
 * Tolerances (f32 unit roundoff u = 6e-8; the losses are sums of at most 63 terms in [0, 1]):
 * - forward on a backend vs lvLossRef: atol 2e-6 (63 * u relative on each sum, loss ~ 1);
 * - backend vs float64 graph (loss and gradient): atol 1e-5, rtol 1e-4, the op suite's defaults;
 * - float64 autodiff vs central differences: the harness's rtol 1e-5, atol 1e-6 (eps 1e-6);
 *   at p = 0 the loss curves on the scale sqrt(eps_lv) = 1e-4, so the step is 1e-7 there.
 */
import { join } from "node:path";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { add, affine, div, gradients, Graph, mul, sqrt, square, sum } from "../lib/graph/mod.ts";
import { segLoss } from "../lib/train/loss.ts";
import { LV_EPS, lvLoss, lvLossRef, semiLoss } from "../lib/train/lv_loss.ts";
import { binarizePseudo, epiUpdate, pickContrastive, textCosine } from "../lib/train/epi.ts";
import { CONTRASTIVE_TABLE, readContrastiveSet } from "../lib/data/contrastive.ts";
import { DataError } from "../lib/data/errors.ts";
import {
  CONTRASTIVE_FIGS,
  contrastiveMaskPixels,
  describeZones,
  generateSynth,
  LEVELS,
  SIDES,
  type Zone,
  zoneAt,
} from "../lib/data/synth.ts";
import { buildXlsx } from "../lib/data/xlsx_write.ts";
import { encodeBuiltin } from "../lib/data/text_builtin.ts";
import { assert, expectError, expectRejection } from "./assert.ts";
import { assertClose, checkOp, fdCheck, noGpu, type OpCase, randn, runOn } from "./harness.ts";

// ---------------------------------------------------------------------------------------------
// lvLoss

/** Probabilities in (0, 1): the sigmoid of seeded normals. */
const probs = (n: number, seed: number) =>
  Float64Array.from(randn(n, seed), (v) => 1 / (1 + Math.exp(-v)));
/** A seeded 0/1 mask with roughly a third foreground. */
const binary = (n: number, seed: number) =>
  Float64Array.from(randn(n, seed), (v) => (v > 0.43 ? 1 : 0));

interface LvCase {
  name: string;
  shape: number[];
  p: Float64Array;
  c: Float64Array;
  /** Finite-difference step (see the tolerances above). */
  fdEps?: number;
}

const LV_CASES: LvCase[] = (() => {
  const cases: LvCase[] = [];
  const s1 = [1, 1, 5, 7];
  cases.push({ name: "B=1 5x7", shape: s1, p: probs(35, 1), c: binary(35, 2) });
  const s3 = [3, 1, 7, 9];
  const c3 = binary(189, 4);
  c3.fill(0, 63, 126); // sample 1: an all-zero contrastive mask
  cases.push({ name: "B=3 7x9, sample 1 mask all zero", shape: s3, p: probs(189, 3), c: c3 });
  cases.push({
    name: "B=3 5x3, p constant",
    shape: [3, 1, 5, 3],
    p: new Float64Array(45).fill(0.3),
    c: binary(45, 5),
  });
  const p0 = probs(2 * 21, 6);
  p0.fill(0, 0, 21); // sample 0: an all-zero prediction (sigmoid underflow)
  cases.push({
    name: "B=2 3x7, sample 0 p all zero",
    shape: [2, 1, 3, 7],
    p: p0,
    c: binary(42, 7),
    fdEps: 1e-7,
  });
  cases.push({
    name: "B=1 1x1, p and c all zero",
    shape: [1, 1, 1, 1],
    p: new Float64Array(1),
    c: new Float64Array(1),
    fdEps: 1e-7,
  });
  return cases;
})();

function lvOpCase(k: LvCase): OpCase {
  return {
    name: `lvLoss ${k.name}`,
    inputs: {
      p: { shape: k.shape, values: k.p },
      // The contrastive mask is a label: no gradient is asked for it.
      c: { shape: k.shape, values: k.c, noGrad: true },
    },
    build: ({ p, c }) => lvLoss(p, c),
  };
}

const f32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));

for (const k of LV_CASES) {
  for (const target of ["ref", "cpu", "webgpu"] as const) {
    Deno.test({
      name: `lvLoss ${k.name}: forward vs lvLossRef [${target}]`,
      ignore: target === "webgpu" && noGpu,
      fn: async () => {
        const g = new Graph();
        const p = g.input("p", k.shape), c = g.input("c", k.shape);
        const l = lvLoss(p, c);
        assert(l.shape.join() === "1", `output shape [${l.shape}] is segLoss's [1]`);
        // Both sides see the same f32-rounded inputs, as a backend stores them.
        const leaves = new Map([["p", f32(k.p)], ["c", f32(k.c)]]);
        const got = target === "ref"
          ? runRef({ l }, leaves).l
          : (await runOn(target, { l }, leaves)).l;
        const want = lvLossRef(leaves.get("p")!, leaves.get("c")!, k.shape[0], p.size / k.shape[0]);
        // ref: 1e-7, since the graph's batch mean multiplies by f32(1 / B), lvLossRef divides.
        const tol = target === "ref" ? 1e-7 : 2e-6;
        assertClose(`lvLoss ${k.name} [${target}]`, got, [want], tol, 0);
      },
    });
  }
  Deno.test({
    name: `lvLoss ${k.name}: loss and gradient vs float64 [webgpu]`,
    ignore: noGpu,
    fn: () => checkOp(lvOpCase(k)),
  });
  Deno.test(`lvLoss ${k.name}: loss and gradient vs float64 [cpu]`, () =>
    checkOp(lvOpCase(k), "cpu"));
  Deno.test(`lvLoss ${k.name}: gradient vs finite differences [fd]`, () =>
    fdCheck(lvOpCase(k), k.fdEps));
}

Deno.test("lvLoss: values at known points; a zero mask contributes exactly 1", () => {
  const plane = 4;
  const p = Float64Array.from([0.5, 0.5, 0, 0, 1, 0, 0, 0]);
  const c = Float64Array.from([1, 1, 0, 0, 0, 0, 0, 0]);
  // Sample 0: p parallel to c, cos ~ 1; sample 1: c = 0, cos = 0 exactly.
  const v = lvLossRef(p, c, 2, plane);
  assertClose("lvLossRef", [v], [(0 + 1) / 2], 1e-8, 0);
  const g = new Graph();
  const pt = g.input("p", [2, 1, 2, 2]), ct = g.input("c", [2, 1, 2, 2]);
  const out = runRef({ l: lvLoss(pt, ct) }, new Map([["p", p], ["c", c]])).l[0];
  assertClose("lvLoss graph", [out], [v], 1e-15, 0);
  expectError(
    "mismatched shapes refused",
    RangeError,
    () => lvLoss(pt, g.input("c2", [2, 1, 2, 3])),
  );
});

Deno.test("lvLoss: eps outside the square roots would give a NaN gradient at p = 0", () => {
  // The textbook placement sum(pc) / (|p| |c| + eps), built from the same ops: its forward is
  // finite at p = 0 but d sqrt/ds = 0.5 / 0 times d(sum p^2)/dp = 0 is NaN. lvLoss must not be.
  const g = new Graph();
  const p = g.input("p", [1, 1, 2, 3]), c = g.input("c", [1, 1, 2, 3]);
  const ax = [1, 2, 3];
  const naive = affine(
    div(sum(mul(p, c), ax), add(mul(sqrt(sum(square(p), ax)), sqrt(sum(square(c), ax))), LV_EPS)),
    -1,
    1,
  );
  const safe = lvLoss(p, c);
  const [dNaive] = gradients(sum(naive, [0, 1, 2, 3]), [p]);
  const [dSafe] = gradients(sum(safe, [0]), [p]);
  const leaves = new Map([["p", new Float64Array(6)], [
    "c",
    Float64Array.from([1, 0, 1, 1, 0, 0]),
  ]]);
  const r = runRef({ n: naive, dn: dNaive, s: safe, ds: dSafe }, leaves);
  assert(r.n[0] === 1 && r.s[0] === 1, "both forwards are 1 at p = 0");
  assert(r.dn.some(Number.isNaN), "the naive gradient is NaN (the reason for the placement)");
  assert(r.ds.every(Number.isFinite), "lvLoss's gradient is finite");
});

// ---------------------------------------------------------------------------------------------
// semiLoss

for (const target of ["ref", "cpu", "webgpu"] as const) {
  Deno.test({
    name: `semiLoss = segLoss + 0.1 * lvLoss, values and gradients [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      const shape = [3, 1, 5, 7];
      const g = new Graph();
      const p = g.input("p", shape), y = g.input("y", shape), c = g.input("c", shape);
      const w = { dice: 0.5, bce: 0.5, lv: 0.1 };
      const semi = semiLoss(p, y, c, w);
      const seg = segLoss(p, y, w);
      const lv = lvLoss(p, c);
      assert(semi.shape.join() === "1", "semiLoss shape [1]");
      const [dSemi] = gradients(semi, [p]);
      const [dSeg] = gradients(seg, [p]);
      const [dLv] = gradients(lv, [p]);
      const leaves = new Map([
        ["p", f32(probs(105, 11))],
        ["y", binary(105, 12)],
        ["c", binary(105, 13)],
      ]);
      const outs = { semi, seg, lv, dSemi, dSeg, dLv };
      const r = target === "ref" ? runRef(outs, leaves) : await runOn(target, outs, leaves);
      // The weight is an f32 constant of the graph, as every affine constant is.
      const a = Math.fround(0.1);
      const tol = target === "ref" ? 1e-14 : 1e-6;
      assertClose("semi value", r.semi, [r.seg[0] + a * r.lv[0]], tol, 0);
      const want = Float64Array.from(r.dSeg, (v, i) => v + a * r.dLv[i]);
      assertClose("semi gradient", r.dSemi, want, tol, 1e-5);
      // lv = 0: the LV term is left out (no square root anywhere), the value is segLoss's.
      const g0 = new Graph();
      const [p0, y0, c0] = ["p", "y", "c"].map((n) => g0.input(n, shape));
      const only = semiLoss(p0, y0, c0, { ...w, lv: 0 });
      assert(!g0.nodes.some((t) => t.kind === "node" && t.op === "sqrt"), "lv = 0: no LV term");
      const z = runRef({ only }, leaves);
      assert(z.only[0] === runRef({ seg }, leaves).seg[0], "lv = 0 equals segLoss exactly");
    },
  });
}

Deno.test("semiLoss: float64 gradient vs finite differences; bad LV weights refused", () => {
  fdCheck({
    name: "semiLoss",
    inputs: {
      p: { shape: [2, 1, 3, 5], values: probs(30, 21) },
      y: { shape: [2, 1, 3, 5], values: binary(30, 22), noGrad: true },
      c: { shape: [2, 1, 3, 5], values: binary(30, 23), noGrad: true },
    },
    build: ({ p, y, c }) => semiLoss(p, y, c, { dice: 1, bce: 1, lv: 0.1 }),
  });
  const g = new Graph();
  const t = g.input("t", [1, 1, 2, 2]);
  for (const lv of [-0.1, NaN, Infinity]) {
    expectError(
      `lv = ${lv} refused`,
      RangeError,
      () => semiLoss(t, t, t, { dice: 0.5, bce: 0.5, lv }),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// EPI and pseudo labels

Deno.test("epiUpdate: hand values, beta 0 and 1, in place", () => {
  const prev = Float32Array.from([1, 0, 0.5, 0.25, 0.75]);
  const pred = Float32Array.from([0, 1, 0.5, 1, 0.25]);
  const got = epiUpdate(prev, pred, 0.99);
  const want = [0.99, 0.01, 0.5, 0.2575, 0.745].map(Math.fround);
  assert(got.every((v, i) => v === want[i]), `beta 0.99: ${[...got]} vs ${want}`);
  assert(epiUpdate(prev, pred, 0).every((v, i) => v === pred[i]), "beta 0 takes pred");
  assert(epiUpdate(prev, pred, 1).every((v, i) => v === prev[i]), "beta 1 keeps prev");
  // Halfway: the float64 mean rounded once to f32.
  const half = epiUpdate(Float32Array.from([0.1]), Float32Array.from([0.2]), 0.5);
  assert(half[0] === Math.fround(0.5 * Math.fround(0.1) + 0.5 * Math.fround(0.2)), "one rounding");
  const inPlace = Float32Array.from(prev);
  assert(epiUpdate(inPlace, pred, 0.99, inPlace) === inPlace, "returns out");
  assert(inPlace.every((v, i) => v === got[i]), "in place equals a fresh output");
  for (
    const bad of [
      () => epiUpdate(prev, pred.subarray(1), 0.9),
      () => epiUpdate(prev, pred, 0.9, new Float32Array(2)),
      () => epiUpdate(prev, pred, 1.5),
      () => epiUpdate(prev, pred, NaN),
    ]
  ) {
    expectError(`refused: ${bad}`, RangeError, bad);
  }
});

Deno.test("epiUpdate: bitwise deterministic; converges as beta^t", () => {
  const n = 4096;
  const start = Float32Array.from(probs(n, 31));
  const preds = [32, 33, 34].map((s) => Float32Array.from(probs(n, s)));
  const iterate = () => {
    let p: Float32Array = Float32Array.from(start);
    for (let t = 0; t < 30; t++) p = epiUpdate(p, preds[t % 3], 0.99);
    return p;
  };
  const a = iterate(), b = iterate();
  assert(
    new Uint8Array(a.buffer).every((v, i) => v === new Uint8Array(b.buffer)[i]),
    "two runs give the same bytes",
  );
  // A constant prediction: P_t - pred = beta^t (P_0 - pred), up to f32 rounding per step.
  let p: Float32Array = Float32Array.from(start);
  const target = preds[0];
  for (let t = 0; t < 100; t++) p = epiUpdate(p, target, 0.9);
  const want = Float64Array.from(start, (v, i) => target[i] + 0.9 ** 100 * (v - target[i]));
  assertClose("EMA closed form", p, want, 1e-6, 0);
});

Deno.test("binarizePseudo: strict threshold, NaN is background", () => {
  const p = Float32Array.from([0.5, 0.50001, NaN, 0.9, 0.1, 0.3]);
  assert(binarizePseudo(p).join() === "0,1,0,1,0,0", "default 0.5");
  assert(binarizePseudo(p, 0.25).join() === "1,1,0,1,0,1", "threshold 0.25");
});

// ---------------------------------------------------------------------------------------------
// Contrastive selection by text

Deno.test("textCosine / pickContrastive: argmax, ties to the lowest index, zero vectors", () => {
  const a = Float32Array.from([1, 2, 0, -1]);
  const b = Float32Array.from([0, 1, 1, 0]);
  const z = new Float32Array(4);
  assertClose("cos(a, a)", [textCosine(a, a)], [1], 1e-15, 0);
  assertClose("cos(a, b)", [textCosine(a, b)], [2 / (Math.sqrt(6) * Math.sqrt(2))], 1e-15, 0);
  assert(textCosine(a, z) === 0 && textCosine(z, z) === 0, "zero vector: similarity 0");
  assert(pickContrastive(a, [b, a, a]) === 1, "argmax; equal rows: the first");
  assert(pickContrastive(Float32Array.from([2, 4, 0, -2]), [b, a]) === 1, "scale invariant");
  // Exactly equal similarities from different rows: the lowest index.
  const e0 = Float32Array.from([1, 0]), e1 = Float32Array.from([0, 1]);
  assert(pickContrastive(Float32Array.from([1, 1]), [e0, e1]) === 0, "tie -> index 0");
  assert(pickContrastive(Float32Array.from([1, 1]), [z.subarray(0, 2), e1, e0]) === 1, "tie");
  assert(pickContrastive(new Float32Array(4), [b, a]) === 0, "zero text -> index 0");
  // A zero bank row scores 0, which beats negative similarities.
  assert(pickContrastive(Float32Array.from([-1, -2, 0, 1]), [a, z]) === 1, "zero row vs -1");
  assert(pickContrastive(Float32Array.from([NaN, 0, 0, 0]), [a, b]) === 0, "NaN never wins");
  for (const bad of [() => pickContrastive(a, []), () => textCosine(a, e0)]) {
    expectError(`refused: ${bad}`, RangeError, bad);
  }
});

Deno.test("pickContrastive on the synthetic set's texts (builtin encoder, 14 tokens)", () => {
  // LV2D keeps 14 tokens (lvit-reference.md 3.2); dim is small to keep the test quick.
  const enc = (t: string) => encodeBuiltin(t, { maxTokens: 14, dim: 64 });
  const bank = CONTRASTIVE_FIGS.map((f) => enc(f.text));
  CONTRASTIVE_FIGS.forEach((f, i) => {
    assert(pickContrastive(enc(f.text), bank) === i, `${f.image} picks itself`);
  });
  // Every sentence describeZones can write (1-3 lesions in distinct zones): the picked mask
  // should mostly cover the zones the sentence names. Measured: 92 of 96 (synth.ts says more).
  const all: Zone[] = LEVELS.flatMap((level) => SIDES.map((side) => ({ level, side })));
  let named = 0, covered = 0;
  for (let m = 1; m < 64; m++) {
    const zones = all.filter((_, i) => (m >> i) & 1);
    if (zones.length > 3) continue;
    const fig = CONTRASTIVE_FIGS[pickContrastive(enc(describeZones(zones)), bank)];
    for (const z of zones) {
      named++;
      if (fig.zones.some((q) => q.side === z.side && q.level === z.level)) covered++;
    }
  }
  assert(named === 6 * 1 + 15 * 2 + 20 * 3, `${named} zones in 41 sentences`);
  assert(covered >= 90, `picked masks cover ${covered}/${named} named zones`);
});

// ---------------------------------------------------------------------------------------------
// The contrastive label folder

const SIZE = 48;

/** A generated data set (small), shared by the reader tests; removed at the end. */
const root = await Deno.makeTempDir({ prefix: "semi_parts_" });
const dataDir = join(root, "data");
await generateSynth({ out: dataDir, seed: 7, train: 1, val: 1, test: 1, size: SIZE });
const lvDir = join(dataDir, "LV_loss");
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

/** A fresh copy of the generated LV_loss folder to damage. */
async function copyLv(name: string): Promise<string> {
  const dst = join(root, name);
  await Deno.mkdir(dst);
  for await (const e of Deno.readDir(lvDir)) {
    await Deno.copyFile(join(lvDir, e.name), join(dst, e.name));
  }
  return dst;
}

/** readContrastiveSet(dir) must throw a DataError about `path` mentioning every needle. */
async function expectDataError(dir: string, path: string, ...needles: string[]) {
  // Every message says what the folder must hold.
  const err = await expectRejection(
    path,
    DataError,
    () => readContrastiveSet(dir, SIZE),
    ...needles,
    CONTRASTIVE_TABLE,
    "Image | Description",
    "fig1.png",
  );
  assert(err.path === path, `error names ${err.path}, expected ${path}`);
}

Deno.test("readContrastiveSet: the generated LV_loss folder, 14 binary masks in table order", async () => {
  const set = await readContrastiveSet(lvDir, SIZE);
  assert(set.dir === lvDir && set.size === SIZE, "dir and size");
  assert(set.keys.length === 14 && set.texts.length === 14 && set.masks.length === 14, "14 rows");
  set.keys.forEach((k, i) => assert(k === `fig${i + 1}.png`, `row ${i}: ${k}`));
  set.texts.forEach((t, i) => assert(t === CONTRASTIVE_FIGS[i].text, `text ${i}`));
  assert(set.texts[0] === "Unilateral pulmonary infection, one infected area, all left lung.", "1");
  assert(set.texts[13].startsWith("Bilateral pulmonary infection, four infected areas,"), "14");
  for (let k = 0; k < 14; k++) {
    const m = set.masks[k];
    assert(m.length === SIZE * SIZE && m.every((v) => v === 0 || v === 1), `mask ${k} binary`);
    const grey = contrastiveMaskPixels(CONTRASTIVE_FIGS[k].zones, SIZE);
    const named = new Set(CONTRASTIVE_FIGS[k].zones.map((z) => `${z.level} ${z.side}`));
    let edge = 0, inside = 0;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const i = y * SIZE + x;
        // Same size, so the resize is the identity and the threshold is all that acts.
        assert(m[i] === (grey[i] > 127 ? 1 : 0), `mask ${k} pixel ${i}: threshold 127`);
        const z = zoneAt((x + 0.5) / SIZE, (y + 0.5) / SIZE);
        const want = z !== null && named.has(`${z.level} ${z.side}`) ? 1 : 0;
        inside += want;
        // The mask is the union of the named zones; disagreement only on anti-aliased edges.
        if (m[i] !== want) {
          assert(grey[i] > 0 && grey[i] < 255, `mask ${k} pixel ${i} off the zones`);
          edge++;
        }
      }
    }
    assert(edge <= 0.05 * inside, `mask ${k}: ${edge} edge disagreements of ${inside}`);
    // Patient's left lung on the image right: fig1 ("all left lung") lies in x > SIZE / 2.
    if (k === 0) {
      for (let i = 0; i < m.length; i++) if (m[i]) assert(i % SIZE > SIZE / 2, "left lung right");
    }
  }
  // Anti-aliased edges exist, so > 0 would have given bigger masks than > 127.
  const grey0 = contrastiveMaskPixels(CONTRASTIVE_FIGS[0].zones, SIZE);
  assert(grey0.some((v) => v > 0 && v <= 127), "some rim pixels below mid-grey");
  // Resized on read: another size gives masks of that size, still binary, similar coverage.
  const big = await readContrastiveSet(lvDir, 77);
  assert(big.masks.every((m) => m.length === 77 * 77 && m.every((v) => v === 0 || v === 1)), "77");
  const frac = (m: Float32Array) => m.reduce((s, v) => s + v, 0) / m.length;
  for (let k = 0; k < 14; k++) {
    assertClose(`coverage ${k}`, [frac(big.masks[k])], [frac(set.masks[k])], 0.02, 0);
  }
});

Deno.test("readContrastiveSet: damaged folders are DataErrors naming the file", async () => {
  // Missing folder.
  const gone = join(root, "nowhere");
  await expectDataError(gone, gone, "folder not found");
  // Missing table.
  const noTable = await copyLv("no_table");
  await Deno.remove(join(noTable, CONTRASTIVE_TABLE));
  await expectDataError(noTable, join(noTable, CONTRASTIVE_TABLE), "file not found");
  // A row naming a missing mask.
  const noMask = await copyLv("no_mask");
  await Deno.remove(join(noMask, "fig7.png"));
  await expectDataError(noMask, join(noMask, "fig7.png"), "file not found", "data row 7");
  // An empty table (header only).
  const empty = await copyLv("empty");
  await Deno.writeFile(join(empty, CONTRASTIVE_TABLE), buildXlsx(["Image", "Description"], []));
  await expectDataError(empty, join(empty, CONTRASTIVE_TABLE), "no rows");
  // A truncated PNG and one that is not an image at all.
  const cut = await copyLv("cut");
  const bytes = await Deno.readFile(join(cut, "fig3.png"));
  await Deno.writeFile(join(cut, "fig3.png"), bytes.subarray(0, bytes.length >> 1));
  await expectDataError(cut, join(cut, "fig3.png"), "truncated PNG", "data row 3");
  const junk = await copyLv("junk");
  await Deno.writeFile(join(junk, "fig1.png"), new TextEncoder().encode("not an image"));
  await expectDataError(junk, join(junk, "fig1.png"), "unrecognised signature");
  // A table that is not an xlsx, one without the Description column, empty cells, a path.
  const notXlsx = await copyLv("not_xlsx");
  await Deno.writeFile(join(notXlsx, CONTRASTIVE_TABLE), new Uint8Array([1, 2, 3]));
  await expectDataError(notXlsx, join(notXlsx, CONTRASTIVE_TABLE), "xlsx");
  const badHeader = await copyLv("bad_header");
  await Deno.writeFile(
    join(badHeader, CONTRASTIVE_TABLE),
    buildXlsx(["Image", "Text"], [["fig1.png", "x"]]),
  );
  await expectDataError(badHeader, join(badHeader, CONTRASTIVE_TABLE), "Image | Text");
  const blank = await copyLv("blank_cell");
  await Deno.writeFile(
    join(blank, CONTRASTIVE_TABLE),
    buildXlsx(["Image", "Description"], [["fig1.png", "a"], ["fig2.png", ""]]),
  );
  await expectDataError(blank, join(blank, CONTRASTIVE_TABLE), "data row 2", "empty");
  const escape = await copyLv("escape");
  await Deno.writeFile(
    join(escape, CONTRASTIVE_TABLE),
    buildXlsx(["Image", "Description"], [["../data/LV_loss/fig1.png", "a"]]),
  );
  await expectDataError(escape, join(escape, CONTRASTIVE_TABLE), "not a file name");
  // A file where the folder should be.
  await expectDataError(join(noTable, "fig1.png"), join(noTable, "fig1.png"), "not a folder");
  await expectRejection("size 0 refused", RangeError, () => readContrastiveSet(lvDir, 0));
});
