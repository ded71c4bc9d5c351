/**
 * Semi-supervised runs end to end (issue 7): the labeled subset is recorded, pseudo labels are
 * written per epoch, and a run interrupted inside the pseudo-label stage and resumed is bitwise
 * the uninterrupted run. Also: the EPI/no-EPI and LV/no-LV switches change the result.
 */
import { join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { splitLabeled } from "../lib/run/semi.ts";
import { epochBatches, supervisedPlan } from "../lib/train/trainer.ts";
import { permutation } from "../lib/rng/shuffle.ts";
import { sha256File } from "./process.ts";

const quiet = { progress: false, signals: false, log: () => {} };

function semi(dir: string, semiLine = "semi: { prototype_epochs: 1 }") {
  const text = [
    "name: semi-tiny",
    "seed: 4",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 12, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    "train: { epochs: 4, batch: 2, lr: 0.01, min_save_epoch: 1, labeled_fraction: 0.5 }",
    semiLine,
    "eval: { overlays: 0, save_predictions: false }",
  ].join("\n");
  return resolveExperimentText(join(dir, "semi.yaml"), text);
}

Deno.test("labeled split: seeded, sorted, disjoint, round(n * fraction) labeled", () => {
  const a = splitLabeled(12, 0.25, 7);
  const b = splitLabeled(12, 0.25, 7);
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error("not deterministic");
  if (a.labeled.length !== 3 || a.unlabeled.length !== 9) throw new Error("sizes");
  const all = [...a.labeled, ...a.unlabeled].sort((x, y) => x - y);
  if (all.join() !== Array.from({ length: 12 }, (_, i) => i).join()) throw new Error("cover");
  if (JSON.stringify(splitLabeled(12, 0.25, 8)) === JSON.stringify(a)) {
    throw new Error("the seed does not change the split");
  }
});

Deno.test("a supervised plan shuffles exactly like the plain loop", () => {
  const r = { batch: 3, max_steps_per_epoch: null } as Parameters<typeof epochBatches>[1];
  const got = epochBatches(supervisedPlan(10), r, 5, 2).map((b) => b.pos);
  const order = permutation(10, 5, 2);
  const want = [order.slice(0, 3), order.slice(3, 6), order.slice(6, 9)];
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${got} vs ${want}`);
});

Deno.test("semi run: resumed inside the pseudo-label stage equals the uninterrupted run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lvit-semi-" });
  try {
    const full = await runExperiment(semi(dir), { ...quiet, out: join(dir, "a") });
    const labeled = JSON.parse(await Deno.readTextFile(join(full.dir, "labeled.json")));
    if (labeled.labeled.length !== 6 || labeled.unlabeled.length !== 6) {
      throw new Error(`labeled.json: ${JSON.stringify(labeled)}`);
    }
    // 3 labeled steps in epoch 1 (steps 1-3), then 3 labeled + 3 unlabeled per epoch (epoch 2:
    // steps 4-9, epoch 3: 10-15): step 12 is inside epoch 3, whose pseudo labels are the EPI
    // update of epoch 2's.
    const out = join(dir, "b");
    const cut = await runExperiment(semi(dir), { ...quiet, out, stopAfterSteps: 12 });
    if (!cut.interrupted) throw new Error("not interrupted");
    const r = await runExperiment(semi(dir), { ...quiet, out, resume: true });
    for (const f of ["checkpoints/best.safetensors", "checkpoints/last.safetensors"]) {
      if ((await sha256File(join(full.dir, f))) !== (await sha256File(join(r.dir, f)))) {
        throw new Error(`${f} differs after resume`);
      }
    }
    for (const f of ["pseudo/epoch-3.f32", "pseudo/epoch-4.f32"]) {
      if ((await sha256File(join(full.dir, f))) !== (await sha256File(join(r.dir, f)))) {
        throw new Error(`${f} differs after resume`);
      }
    }
    // The switches reach the training: each ablation gives other weights.
    const base = await sha256File(join(full.dir, "checkpoints/last.safetensors"));
    for (const off of ["epi: false", "lv_loss: false"]) {
      const line = `semi: { prototype_epochs: 1, ${off} }`;
      const v = await runExperiment(semi(dir, line), { ...quiet, out: join(dir, "c") });
      if ((await sha256File(join(v.dir, "checkpoints/last.safetensors"))) === base) {
        throw new Error(`${off} trains the same weights`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
