// Pipeline parity, our side (README.md, "Training and evaluation pipeline"): runs our
// preprocessing, augmentation, loss, metrics, schedule and selection, Adam, initialisation, batch
// norm and dropout on what pipeline_official.py wrote to $PARITY_OUT/pipeline/, and writes
// ours.json with one figure per check (pipeline_compare.py prints them).
// usage: deno run --allow-read --allow-write --allow-env --allow-ffi pipeline_ours.ts
import { referenceLoaderOps } from "../../lib/data/reference_draws.ts";
import {
  compile,
  dropout,
  gradients,
  Graph,
  initValues,
  selectBackend,
  sigmoid,
  type Tensor,
} from "../../mod.ts";
import { openDataset, type SplitData } from "../../lib/data/dataset.ts";
import { applyAugment, type AugmentOp, drawAugment } from "../../lib/data/augment.ts";
import { segLoss } from "../../lib/train/loss.ts";
import { meanScores, testScores, valScores } from "../../lib/eval/metrics.ts";
import { lrAt } from "../../lib/train/schedule.ts";
import {
  epochBatches,
  type Geometry,
  initialState,
  type Recipe,
  type Samples,
  supervisedPlan,
  train,
} from "../../lib/train/trainer.ts";
import { type Session, trainingForward } from "../../lib/train/session.ts";
import { adamHyper, adamUpdate, HYPER } from "../../lib/train/optim.ts";
import { buildModel } from "../../lib/models/registry.ts";
import { batchNorm1d, batchNorm2d } from "../../lib/nn/layers.ts";
import { readTextTable } from "../../lib/data/xlsx.ts";
import { builtinTokens, prepareText } from "../../lib/data/text_builtin.ts";
import { permutation } from "../../lib/rng/shuffle.ts";

const OUT = `${Deno.env.get("PARITY_OUT") ?? new URL("./out", import.meta.url).pathname}/pipeline`;
const off = JSON.parse(await Deno.readTextFile(`${OUT}/official.json`));
const DATA: string = Deno.env.get("PARITY_DATA") ?? off.data;
const report: Record<string, unknown> = {};
const backend = await selectBackend("cpu");

const f32 = async (p: string) => new Float32Array((await Deno.readFile(`${OUT}/${p}`)).buffer);
const f64 = async (p: string) => new Float64Array((await Deno.readFile(`${OUT}/${p}`)).buffer);
const u8 = async (p: string) => await Deno.readFile(`${OUT}/${p}`);
const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** Runs `outputs` once on the CPU backend with the given leaf values; returns outputs. */
async function runCpu(
  outputs: Record<string, Tensor>,
  leaves: Record<string, Float32Array>,
  effects: Tensor[] = [],
): Promise<Record<string, Float32Array>> {
  const prog = compile(outputs, effects, backend.limits, backend.name);
  const rt = backend.runtime();
  const exe = await rt.load(prog);
  for (const name of prog.leaves.keys()) rt.write(name, leaves[name]);
  exe.run();
  const res: Record<string, Float32Array> = {};
  for (const k of Object.keys(outputs)) res[k] = await exe.read(k);
  exe.destroy();
  rt.destroy();
  return res;
}

// -----------------------------------------------------------------------------------------
// 1. Preprocessing: our training reader (decoded-tensor records, memory) vs ValGenerator.
const S = 224, PLANE = S * S;
const ds = await openDataset("monuseg", DATA, S, { cacheDir: null });
const maskNameOf = (image: string) => image.replace(/\.[^.]+$/, ".png");
async function readOne(sd: SplitData, key: string) {
  const k = sd.keys.indexOf(key);
  if (k < 0) throw new Error(`no ${key}`);
  const img = new Float32Array(3 * PLANE), mask = new Float32Array(PLANE);
  await sd.read([k], img, mask);
  return { img, mask };
}
const pre: Record<string, unknown> = {};
let preMaxAbs = 0, preValuesDiffer = 0, preMaskDiffer = 0, preImages = 0;
for (const split of ["train", "val", "test"] as const) {
  const sd = ds.splits[split];
  let maxD = 0, nDiff = 0, maskDiff = 0, fgOurs = 0, fgOff = 0;
  const rows: [string, number][] = off.pre[split];
  if (rows.length !== sd.n) throw new Error(`${split}: ${rows.length} official vs ${sd.n} ours`);
  for (const [name, fg] of rows) {
    const { img, mask } = await readOne(sd, maskNameOf(name));
    const oi = await f32(`pre/${name}.img.f32`);
    const om = await u8(`pre/${name}.mask.u8`);
    for (let i = 0; i < oi.length; i++) {
      const d = Math.abs(img[i] - oi[i]);
      if (d > 0) nDiff++;
      maxD = Math.max(maxD, d);
    }
    let fg1 = 0;
    for (let i = 0; i < PLANE; i++) {
      if (mask[i] !== om[i]) maskDiff++;
      fg1 += mask[i];
    }
    fgOurs += fg1 / PLANE;
    fgOff += fg;
  }
  pre[split] = {
    images: rows.length,
    image_max_abs: maxD,
    image_max_levels: Math.round(maxD * 255),
    image_values_differing: nDiff,
    image_values: rows.length * 3 * PLANE,
    mask_pixels_differing: maskDiff,
    fg_fraction_ours: fgOurs / rows.length,
    fg_fraction_official: fgOff / rows.length,
  };
  preMaxAbs = Math.max(preMaxAbs, maxD);
  preValuesDiffer += nDiff;
  preMaskDiffer += maskDiff;
  preImages += rows.length;
}
report.pre = {
  splits: pre,
  images: preImages,
  image_max_abs: preMaxAbs,
  image_values_differing: preValuesDiffer,
  mask_pixels_differing: preMaskDiffer,
};

// -----------------------------------------------------------------------------------------
// 2. Augmentation: the same op on the same input, ours vs RandomGenerator (forced draws).
const table = await f32("aug/unit_table.f32");
let unitMismatch = 0;
for (let v = 0; v < 256; v++) if (Math.fround(v / 255) !== table[v]) unitMismatch++;
const toOp = (o: (string | number)[]): AugmentOp =>
  o[0] === "none"
    ? { kind: "none" }
    : o[0] === "rotflip"
    ? { kind: "rotflip", k: o[1] as 0 | 1 | 2 | 3, axis: o[2] as 0 | 1 }
    : { kind: "rotate", angle: o[1] as number };
const augRes: Record<string, unknown>[] = [];
const outImg = new Float32Array(3 * PLANE), outMask = new Float32Array(PLANE);
for (const name of off.aug.images as string[]) {
  const offPre = { img: await f32(`pre/${name}.img.f32`), mask: await u8(`pre/${name}.mask.u8`) };
  const offMask = Float32Array.from(offPre.mask);
  const ours = await readOne(ds.splits.train, maskNameOf(name));
  for (const [j, o] of (off.aug.ops as (string | number)[][]).entries()) {
    const ti = await u8(`aug/${name}.${j}.img.u8`);
    const tm = await u8(`aug/${name}.${j}.mask.u8`);
    const row: Record<string, unknown> = { image: name, op: o };
    // (a) our op on the official preprocessed tensors: the augmentation alone.
    // (b) our op on our preprocessed tensors: preprocessing and augmentation together.
    for (
      const [tag, src] of [["on_official_input", { ...offPre, mask: offMask }], [
        "end_to_end",
        ours,
      ]] as const
    ) {
      applyAugment(toOp(o), src.img, src.mask, 3, S, S, outImg, outMask);
      let di = 0, dm = 0;
      for (let i = 0; i < outImg.length; i++) if (outImg[i] !== table[ti[i]]) di++;
      for (let i = 0; i < PLANE; i++) if (outMask[i] !== tm[i]) dm++;
      row[tag] = { image_values_differing: di, mask_pixels_differing: dm };
    }
    augRes.push(row);
  }
}
// Our draws: 1000 epochs of the 24 training indices.
const kinds = { rotflip: 0, rotate: 0, none: 0 };
const perEpoch: number[][] = [];
const kHist = [0, 0, 0, 0], axisHist = [0, 0];
const angleHist = new Map<number, number>();
for (let e = 1; e <= 1000; e++) {
  const c = [0, 0, 0];
  for (let i = 0; i < 24; i++) {
    const op = drawAugment(off.schedule.config.seed, e, i);
    kinds[op.kind]++;
    if (op.kind === "rotflip") (c[0]++, kHist[op.k]++, axisHist[op.axis]++);
    else if (op.kind === "rotate") {
      (c[1]++, angleHist.set(op.angle, (angleHist.get(op.angle) ?? 0) + 1));
    } else c[2]++;
  }
  perEpoch.push(c);
}
const angles = [...angleHist.keys()].sort((a, b) => a - b);
const offPos: number[][] = off.aug.draws_torch_1_8.positions;
report.aug = {
  unit_table_mismatches: unitMismatch,
  per_op: augRes,
  total_on_official_input: augRes.reduce(
    (s, r) => {
      const x = r.on_official_input as Record<string, number>;
      return [s[0] + x.image_values_differing, s[1] + x.mask_pixels_differing];
    },
    [0, 0],
  ),
  total_end_to_end: augRes.reduce(
    (s, r) => {
      const x = r.end_to_end as Record<string, number>;
      return [s[0] + x.image_values_differing, s[1] + x.mask_pixels_differing];
    },
    [0, 0],
  ),
  ours_draws: {
    samples: 24000,
    fractions: {
      rotflip: kinds.rotflip / 24000,
      rotate: kinds.rotate / 24000,
      none: kinds.none / 24000,
    },
    per_epoch_rotflip_range: [
      Math.min(...perEpoch.map((c) => c[0])),
      Math.max(...perEpoch.map((c) => c[0])),
    ],
    per_epoch_none_range: [
      Math.min(...perEpoch.map((c) => c[2])),
      Math.max(...perEpoch.map((c) => c[2])),
    ],
    k_hist: kHist,
    axis_hist: axisHist,
    angle_min: angles[0],
    angle_max: angles[angles.length - 1],
    angle_distinct: angles.length,
    angle_count_min: Math.min(...angleHist.values()),
    angle_count_max: Math.max(...angleHist.values()),
  },
  official_1_8_distinct_ops: [...new Set(offPos.map((p) => JSON.stringify(p)))].length,
  // data.augment_draws: reference-loader replays that table (lib/data/reference_draws.ts).
  reference_loader_positions_differing:
    referenceLoaderOps(offPos.length, 2, 666).filter((op, i) =>
      JSON.stringify(
        op.kind === "none"
          ? [0, 0, 0]
          : op.kind === "rotflip"
          ? [1, op.k, op.axis]
          : [2, op.angle, 0],
      ) !== JSON.stringify(offPos[i])
    ).length,
};

// -----------------------------------------------------------------------------------------
// 3. Loss: value and gradients w.r.t. the logits (through our sigmoid) and the probabilities.
const lossRes: Record<string, unknown> = {};
for (const [cname, oc] of Object.entries(off.loss as Record<string, Record<string, number>>)) {
  const B = oc.B;
  const logits = await f32(`loss/${cname}.logits.f32`);
  const pOff = await f32(`loss/${cname}.p.f32`);
  const y = Float32Array.from(await u8(`loss/${cname}.y.u8`));
  const shape = [B, 1, S, S];
  const gA = new Graph();
  const lg = gA.input("logits", shape), yA = gA.input("y", shape);
  const pA = sigmoid(lg);
  const lossA = segLoss(pA, yA);
  const [dl] = gradients(lossA, [lg]);
  const rA = await runCpu({ loss: lossA, dl, p: pA }, { logits, y });
  // Our sigmoid rounds 1 / (1 + exp(-x)) computed in float64 once; torch computes in float32.
  let pDiffer = 0, deadOff = 0, deadOurs = 0, xLo = Infinity, xHi = -Infinity;
  const dlOff = await f32(`loss/${cname}.dlogits.f32`);
  for (let i = 0; i < pOff.length; i++) {
    if (rA.p[i] !== pOff[i]) {
      pDiffer++;
      xLo = Math.min(xLo, Math.abs(logits[i]));
      xHi = Math.max(xHi, Math.abs(logits[i]));
    }
    const wrong = (y[i] > 0.5) !== (logits[i] > 0);
    if (wrong && dlOff[i] === 0) deadOff++;
    if (wrong && rA.dl[i] === 0) deadOurs++;
  }
  const gB = new Graph();
  const pB = gB.input("p", shape), yB = gB.input("y", shape);
  const lossB = segLoss(pB, yB);
  const [dp] = gradients(lossB, [pB]);
  const rB = await runCpu({ loss: lossB, dp }, { p: pOff, y });
  const dl32 = await f32(`loss/${cname}.dlogits.f32`);
  const dl64 = await f64(`loss/${cname}.dlogits.f64`);
  const dp32 = await f32(`loss/${cname}.dp_direct.f32`);
  const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => maxAbsDiff(a, b) / maxAbs(b);
  let dpFinite = 0, dpBigOff = 0, dpBigOurs = 0;
  for (let i = 0; i < dp32.length; i++) {
    if (Math.abs(dp32[i]) > 1e6) dpBigOff++;
    if (Math.abs(rB.dp[i]) > 1e6) dpBigOurs++;
    if (Math.abs(dp32[i]) <= 1e6 && Math.abs(rB.dp[i]) <= 1e6) dpFinite++;
  }
  // Probability gradients away from saturated pixels (official |dp| <= 1e6 there).
  const keep = Array.from(dp32.keys()).filter((i) => Math.abs(dp32[i]) <= 1e6);
  const dpOursK = keep.map((i) => rB.dp[i]), dpOffK = keep.map((i) => dp32[i]);
  lossRes[cname] = {
    loss_ours_logits_graph: rA.loss[0],
    loss_ours_p_graph: rB.loss[0],
    loss_official_f32: oc.f32,
    loss_official_f64: oc.f64,
    loss_rel_vs_official_f32: Math.abs(rA.loss[0] - oc.f32) / Math.abs(oc.f32),
    loss_rel_vs_official_f64: Math.abs(rA.loss[0] - oc.f64) / Math.abs(oc.f64),
    official_f32_vs_f64_rel: Math.abs(oc.f32 - oc.f64) / Math.abs(oc.f64),
    dlogits_max_rel_vs_official_f32: rel(rA.dl, dl32),
    dlogits_max_rel_vs_official_f64: rel(rA.dl, dl64),
    dlogits_official_f32_vs_f64: rel(dl32, dl64),
    dp_max_rel_vs_official_f32_unsaturated: rel(dpOursK, dpOffK),
    dp_saturated_official: dpBigOff,
    dp_saturated_ours: dpBigOurs,
    dp_compared: dpFinite,
    sigmoid_values_differing: pDiffer,
    sigmoid_differing_abs_logit_range: pDiffer ? [xLo, xHi] : null,
    sigmoid_max_abs: maxAbsDiff(rA.p, pOff),
    wrong_pixels_zero_dlogit_official: deadOff,
    wrong_pixels_zero_dlogit_ours: deadOurs,
  };
}
report.loss = lossRes;

// -----------------------------------------------------------------------------------------
// 4. Metrics.
{
  const probs = await f32("metrics/probs.f32");
  const masks = Float32Array.from(await u8("metrics/masks.u8"));
  const m = off.metrics;
  const val = Array.from({ length: 8 }, (_, k) => valScores(probs, masks, k * PLANE, PLANE));
  const tst = Array.from({ length: 8 }, (_, k) => testScores(probs, masks, k * PLANE, PLANE));
  const d = (a: number[], b: number[]) => maxAbsDiff(a, b);
  report.metrics = {
    val_dice_per_image_ours: val.map((s) => s.dice),
    val_iou_per_image_ours: val.map((s) => s.iou),
    test_dice_per_image_ours: tst.map((s) => s.dice),
    test_iou_per_image_ours: tst.map((s) => s.iou),
    val_dice_max_abs: d(val.map((s) => s.dice), m.val_dice_per_image),
    val_iou_max_abs: d(val.map((s) => s.iou), m.val_iou_per_image),
    test_dice_max_abs: d(tst.map((s) => s.dice), m.test_dice_per_image),
    test_iou_max_abs: d(tst.map((s) => s.iou), m.test_iou_per_image),
    val_epoch_mean_dice_abs: Math.abs(meanScores(val).dice - m.val_dice_epoch_mean),
    val_epoch_mean_iou_abs: Math.abs(meanScores(val).iou - m.val_iou_epoch_mean),
    test_mean_dice_abs: Math.abs(meanScores(tst).dice - m.test_dice_mean),
    test_mean_iou_abs: Math.abs(meanScores(tst).iou - m.test_iou_mean),
  };
}

// -----------------------------------------------------------------------------------------
// 5. Schedule and selection: our trainer loop (lib/train/trainer.ts train()) with a stand-in
// session whose validation predictions give the same Dice sequence as the official run.
{
  const cfg = off.schedule.config;
  const recipe: Recipe = {
    epochs: cfg.epochs,
    batch: 2,
    lr: cfg.lr,
    schedule: { kind: "cosine-restarts", t0: 10, t_mult: 1, eta_min: 1e-4 },
    patience: cfg.patience,
    min_save_epoch: 6,
    eval_every: 1,
    checkpoint_every: 0,
    max_steps_per_epoch: null,
  };
  const G = 64, P = G * G;
  const geometry: Geometry = { batch: 2, channels: 1, size: G };
  const trainSet: Samples = { n: 2, read: () => Promise.resolve(), text: null };
  const valSet: Samples = {
    n: 1,
    read: (idx, _x, y) => {
      idx.forEach((_, k) => {
        for (let i = 0; i < P; i++) y[k * P + i] = i < 1000 ? 1 : 0;
      });
      return Promise.resolve();
    },
    text: null,
  };
  const sel: Record<string, unknown>[] = [];
  let lrTrainer: number[] = [];
  for (
    const o of off.selection as {
      m: number[];
      saved_epochs: number[];
      epochs_run: number;
      best_epoch: number;
    }[]
  ) {
    let epoch = 0;
    const lrs: number[] = [];
    const fake = {
      step: (_x: Float32Array, _y: Float32Array, lr: number) => {
        if (lrs.length < epoch + 1) lrs.push(lr);
      },
      takeLossSum: () => Promise.resolve(0),
      predict: () => {
        const m = o.m[epoch++];
        const p = new Float32Array(2 * P).fill(0.1);
        for (let k = 0; k < 2; k++) p.fill(0.9, k * P, k * P + m);
        return Promise.resolve(p);
      },
    } as unknown as Session;
    const saved: number[] = [];
    let ran = 0;
    const st = await train(
      fake,
      { train: trainSet, val: valSet },
      recipe,
      {
        seed: cfg.seed,
        geometry,
        augment: false,
      },
      initialState(),
      {
        checkpoint: () => Promise.resolve(),
        saveBest: (s) => (saved.push(s.bestEpoch!), Promise.resolve()),
        interrupted: () => false,
        onEpoch: () => {
          ran++;
        },
      },
    );
    if (lrTrainer.length === 0) lrTrainer = lrs.slice(0, 60);
    sel.push({
      saved_equal: JSON.stringify(saved) === JSON.stringify(o.saved_epochs),
      saved_ours: saved.length,
      saved_official: o.saved_epochs.length,
      epochs_run_ours: ran,
      epochs_run_official: o.epochs_run,
      best_epoch_ours: st.bestEpoch,
      best_epoch_official: o.best_epoch,
    });
  }
  const offLr: number[] = off.schedule.lr;
  const lrDirect = offLr.map((_, e) => lrAt(recipe.schedule, recipe.lr, e));
  report.schedule = {
    epochs: offLr.length,
    lr_trainer_max_abs: maxAbsDiff(lrTrainer, offLr),
    lr_lrAt_max_abs: maxAbsDiff(lrDirect, offLr),
    lr_trainer_first_12: lrTrainer.slice(0, 12),
  };
  report.selection = sel;
}

// -----------------------------------------------------------------------------------------
// 6. Adam: our adam effect, 5 steps with the official gradients and learning rates.
{
  const n: number = off.adam.n;
  const w0 = await f32("adam_w0.f32");
  const grads = await f32("adam_grads.f32");
  const traj = await f32("adam_traj.f32");
  const traj64 = await f64("adam_traj.f64");
  const g = new Graph();
  const w = g.param("w", [n], { kind: "const", value: 0 });
  const gr = g.input("grad", [n]);
  adamUpdate(g, [w], [gr], {});
  const prog = compile({}, g.effects, backend.limits, backend.name);
  const rt = backend.runtime();
  const exe = await rt.load(prog);
  rt.write("w", w0);
  rt.write("optim.m.w", new Float32Array(n));
  rt.write("optim.v.w", new Float32Array(n));
  let maxRelUpdate = 0, maxAbsW = 0, frozenMoved = 0, ours64 = 0, off64 = 0;
  for (let t = 0; t < 5; t++) {
    exe.run({
      grad: grads.subarray(t * n, (t + 1) * n),
      [HYPER]: adamHyper(off.adam.lrs[t], t + 1),
    });
    const wt = await rt.read("w");
    const ot = traj.subarray(t * n, (t + 1) * n);
    const o64 = traj64.subarray(t * n, (t + 1) * n);
    ours64 = Math.max(ours64, maxAbsDiff(wt, o64));
    off64 = Math.max(off64, maxAbsDiff(ot, o64));
    for (let i = 0; i < n; i++) {
      const du = Math.abs(wt[i] - ot[i]);
      const upd = Math.abs(ot[i] - w0[i]);
      maxAbsW = Math.max(maxAbsW, du);
      if (upd > 1e-6) maxRelUpdate = Math.max(maxRelUpdate, du / upd);
      if (i < 64 && wt[i] !== w0[i]) frozenMoved++;
    }
  }
  exe.destroy();
  rt.destroy();
  report.adam = {
    steps: 5,
    n,
    max_abs_param_diff: maxAbsW,
    max_rel_diff_of_total_update: maxRelUpdate,
    ours_vs_official_f64_max_abs: ours64,
    official_f32_vs_f64_max_abs: off64,
    never_graded_params_moved: frozenMoved,
  };
}

// -----------------------------------------------------------------------------------------
// 7. Initialisation: every leaf of our LViT-T and U-Net training graphs, seeded as a Session
// does (initValues(spec, shape, seed, registration index)), pooled as the official side pools:
// under 4096 values over 24 seeds, under 64 values over 2000 seeds more.
interface InitRow {
  name: string;
  std: number;
  min: number;
  max: number;
  mean: number;
  kurtosis: number | null;
  n: number;
}
function initStats(v: Float64Array) {
  let s = 0;
  for (const x of v) s += x;
  const mean = s / v.length;
  let s2 = 0, s4 = 0, mn = Infinity, mx = -Infinity;
  for (const x of v) {
    const d = x - mean;
    s2 += d * d;
    s4 += d ** 4;
    mn = Math.min(mn, x);
    mx = Math.max(mx, x);
  }
  const std = Math.sqrt(s2 / v.length);
  return {
    n: v.length,
    mean,
    std,
    min: mn,
    max: mx,
    kurtosis: std > 0 ? s4 / v.length / std ** 4 : null,
  };
}
function compareInit(model: "lvit-t" | "unet", official: InitRow[]) {
  const { g } = trainingForward(buildModel(model, {}), {
    batch: 2,
    channels: 3,
    height: S,
    width: S,
  });
  const seed: number = off.schedule.config.seed;
  const ours = new Map<string, ReturnType<typeof initStats> & { spec: unknown }>();
  g.leaves().forEach((t, i) => {
    if (!t.init) return;
    const n = t.size;
    const seeds = n < 4096 ? [seed, ...Array.from({ length: 23 }, (_, s) => s + 1)] : [seed];
    if (n < 64) { for (let s = 0; s < 2000; s++) seeds.push(100000 + s); }
    const all = new Float64Array(n * seeds.length);
    seeds.forEach((sd, j) => all.set(initValues(t.init!, t.shape, sd, i), j * n));
    ours.set(t.name!, { ...initStats(all), spec: t.init });
  });
  const flagged: Record<string, unknown>[] = [];
  let compared = 0, missing = 0, constMismatch = 0, kindMismatch = 0, outside95 = 0;
  const ratios: number[] = [], boundRatios: number[] = [];
  for (const o of official) {
    const u = ours.get(o.name);
    if (!u) {
      missing++;
      flagged.push({ name: o.name, problem: "not in our graph" });
      continue;
    }
    compared++;
    const offConst = o.std === 0, ourConst = u.std === 0;
    if (offConst || ourConst) {
      if (!(offConst && ourConst && o.min === u.min)) {
        constMismatch++;
        flagged.push({ name: o.name, official: o, ours: u });
      }
      continue;
    }
    const ratio = u.std / o.std;
    ratios.push(ratio);
    if (ratio < 0.95 || ratio > 1.05) outside95++;
    // Kurtosis: uniform 1.8, normal 3.
    const kindOff = o.kurtosis! < 2.4 ? "uniform" : "normal";
    const kindOurs = u.kurtosis! < 2.4 ? "uniform" : "normal";
    if (kindOff !== kindOurs) kindMismatch++;
    const spec = u.spec as { kind: string; bound?: number };
    if (spec.kind === "uniform") {
      boundRatios.push(spec.bound! / Math.max(Math.abs(o.min), Math.abs(o.max)));
    }
    if (
      ratio < 0.9 || ratio > 1.1 || kindOff !== kindOurs ||
      Math.abs(u.mean - o.mean) > 0.1 * o.std
    ) {
      flagged.push({ name: o.name, std_ratio: ratio, kindOff, kindOurs, official: o, ours: u });
    }
  }
  const names = new Set(official.map((o) => o.name));
  return {
    official_entries: official.length,
    compared,
    missing_in_ours: missing,
    extra_in_ours: [...ours.keys()].filter((k) => !names.has(k)),
    const_mismatches: constMismatch,
    random_tensors: ratios.length,
    std_ratio_min: Math.min(...ratios),
    std_ratio_max: Math.max(...ratios),
    std_ratio_outside_0_95_1_05: outside95,
    kind_mismatches: kindMismatch,
    uniform_bound_over_official_max_min: Math.min(...boundRatios),
    uniform_bound_over_official_max_max: Math.max(...boundRatios),
    flagged,
  };
}
report.init = compareInit("lvit-t", off.init);
report.init_unet = compareInit("unet", off.init_unet);

// -----------------------------------------------------------------------------------------
// 8. Batch norm in training (3 steps, then eval) and dropout.
{
  const bn: Record<string, unknown> = {};
  for (const bname of ["bn2d", "bn1d"]) {
    const shape: number[] = off.bn[bname].shape;
    const n = shape.reduce((a, b) => a * b, 1);
    const xs = await f32(`${bname}.x.f32`);
    const yTrain = await f32(`${bname}.ytrain.f32`);
    const leaves: Record<string, Float32Array> = {};
    for (const k of ["weight", "bias", "running_mean", "running_var"]) {
      leaves[`bn.${k}`] = await f32(`${bname}.${k}.f32`);
    }
    const build = (training: boolean) => {
      const g = new Graph();
      const x = g.input("x", shape);
      const c = { g, training };
      const y = bname === "bn2d" ? batchNorm2d(c, "bn", x) : batchNorm1d(c, "bn", x);
      return { g, y };
    };
    const tr = build(true), ev = build(false);
    const rt = backend.runtime();
    const exeT = await rt.load(compile({ y: tr.y }, tr.g.effects, backend.limits, backend.name));
    const exeE = await rt.load(compile({ y: ev.y }, [], backend.limits, backend.name));
    for (const [k, v] of Object.entries(leaves)) rt.write(k, v);
    let yMax = 0;
    for (let t = 0; t < 3; t++) {
      exeT.run({ x: xs.subarray(t * n, (t + 1) * n) });
      yMax = Math.max(yMax, maxAbsDiff(await exeT.read("y"), yTrain.subarray(t * n, (t + 1) * n)));
    }
    const rm = await rt.read("bn.running_mean"), rv = await rt.read("bn.running_var");
    exeE.run({ x: xs.subarray(0, n) });
    const ye = await exeE.read("y");
    const offRv = await f32(`${bname}.running_var_after.f32`);
    const offRm = await f32(`${bname}.running_mean_after.f32`);
    bn[bname] = {
      shape,
      train_output_max_abs: yMax,
      running_mean_max_abs: maxAbsDiff(rm, offRm),
      running_var_max_rel: maxAbsDiff(rv, offRv) / maxAbs(offRv),
      eval_output_max_abs: maxAbsDiff(ye, await f32(`${bname}.yeval.f32`)),
    };
    exeT.destroy();
    exeE.destroy();
    rt.destroy();
  }
  report.bn = bn;

  // Dropout sites of our LViT-T training and eval graphs.
  const sites = (training: boolean) => {
    const g = new Graph();
    const x = g.input("x", [2, 3, S, S]);
    buildModel("lvit-t", {})({ g, training }, x);
    return g.nodes.filter((t) => t.kind === "node" && t.op === "dropout").map((t) => ({
      scope: t.scope,
      p: t.attrs.p as number,
    }));
  };
  const trSites = sites(true), evSites = sites(false);
  // The dropout op itself: zeros, scale, and how masks differ across steps and batch items.
  const g = new Graph();
  const x = g.input("x", [2, 196, 64]);
  const step = g.input("step", [1]);
  const y = dropout(x, step, { p: 0.1, seed: 12345 });
  const ones = new Float32Array(2 * 196 * 64).fill(1);
  const r1 = (await runCpu({ y }, { x: ones, step: Float32Array.of(1) })).y;
  const r2 = (await runCpu({ y }, { x: ones, step: Float32Array.of(2) })).y;
  const half = r1.length / 2;
  let zeros = 0, sameSteps = 0, sameItems = 0;
  const kept = new Set<number>();
  for (let i = 0; i < r1.length; i++) {
    if (r1[i] === 0) zeros++;
    else kept.add(r1[i]);
    if ((r1[i] === 0) === (r2[i] === 0)) sameSteps++;
    if (i < half && (r1[i] === 0) === (r1[i + half] === 0)) sameItems++;
  }
  report.dropout = {
    train_sites: trSites.length,
    train_ps: [...new Set(trSites.map((s) => s.p))],
    train_scopes: trSites.map((s) => s.scope),
    eval_sites: evSites.length,
    official: off.dropout,
    op_zero_fraction: zeros / r1.length,
    op_kept_values: [...kept],
    op_same_mask_step1_vs_step2: sameSteps / r1.length,
    op_same_mask_item0_vs_item1: sameItems / half,
    independent_masks_would_give: (zeros / r1.length) ** 2 + (1 - zeros / r1.length) ** 2,
  };
}

// -----------------------------------------------------------------------------------------
// 9. Text handling and batching.
{
  const stems = { train: "Train", val: "Val", test: "Test" } as const;
  let textsCompared = 0, textsDiffer = 0, under10 = 0;
  const differ: unknown[] = [];
  for (const split of ["train", "val", "test"] as const) {
    const t = await readTextTable(`${DATA}/${stems[split]}_Folder/${stems[split]}_text.xlsx`);
    for (const [key, want] of Object.entries(off.texts[split] as Record<string, string>)) {
      const got = prepareText(t.get(key) ?? "");
      textsCompared++;
      if (got !== want) (textsDiffer++, differ.push({ key, got, want }));
      if (builtinTokens(t.get(key) ?? "", 10).length < 10) under10++;
    }
  }
  const recipe = { batch: 2, max_steps_per_epoch: null } as unknown as Recipe;
  let notPerm = 0;
  const firstOrders: string[] = [];
  for (let e = 1; e <= 50; e++) {
    const b = epochBatches(supervisedPlan(24), recipe, off.schedule.config.seed, e);
    const all = b.flatMap((x) => x.pos).sort((a, c) => a - c);
    if (b.length !== 12 || all.join() !== Array.from({ length: 24 }, (_, i) => i).join()) notPerm++;
    if (e <= 2) firstOrders.push(permutation(24, off.schedule.config.seed, e).join(","));
  }
  report.text_batching = {
    texts_compared: textsCompared,
    texts_differing: textsDiffer,
    differ,
    texts_under_10_tokens_ours: under10,
    train_epochs_not_a_full_permutation_of_12_batches: notPerm,
    epoch1_order: firstOrders[0],
    epoch2_order: firstOrders[1],
    val_n: ds.splits.val.n,
    test_n: ds.splits.test.n,
  };
}
ds.close();
await Deno.writeTextFile(`${OUT}/ours.json`, JSON.stringify(report, null, 1));
console.log(`ours: wrote ${OUT}/ours.json`);
