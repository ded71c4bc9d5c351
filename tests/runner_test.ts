/**
 * The experiment runner (issue 6): run folder contents, bitwise reproducibility of two runs,
 * an interrupted-and-resumed run equal to an uninterrupted one (in-process stop and a real
 * SIGTERM), early stopping and the best-checkpoint rule, `deno task eval`, and the exit code /
 * message of bad experiment files and data on the command line.
 */
import { join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { lrAt } from "../lib/train/schedule.ts";
import { readMetrics } from "../lib/run/folder.ts";
import { assertNoStackTrace, denoRun, sha256File, withTmp } from "./process.ts";
import { scoreSplit } from "../lib/train/trainer.ts";
import type { Session } from "../lib/train/session.ts";
import { testScores, valScores } from "../lib/eval/metrics.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const quiet = { progress: false, signals: false, log: () => {} };

/** A tiny experiment: U-Net 4-8 on 32x32 generated data, cpu. */
function tiny(extra = "", name = "tiny") {
  return [
    `name: ${name}`,
    "seed: 5",
    "backend: cpu",
    "data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: CACHE }",
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    "train: { epochs: 4, batch: 2, lr: 0.01, min_save_epoch: 2, checkpoint_every: 3 }",
    "eval: { overlays: 2 }",
    extra,
  ].join("\n");
}

function exp(dir: string, text: string) {
  return resolveExperimentText(join(dir, "e.yaml"), text.replace("CACHE", join(dir, "cache")));
}

Deno.test("cosine warm restarts match PyTorch's per-epoch values", () => {
  const s = { kind: "cosine-restarts" as const, t0: 10, t_mult: 1, eta_min: 1e-4 };
  const want = (e: number) => 1e-4 + (1e-3 - 1e-4) * (1 + Math.cos(Math.PI * (e % 10) / 10)) / 2;
  for (const e of [0, 1, 5, 9, 10, 11, 25]) {
    if (Math.abs(lrAt(s, 1e-3, e) - want(e)) > 1e-15) throw new Error(`epoch ${e}`);
  }
  // T_mult 2: cycles of 10, 20, 40 epochs; epoch 10 restarts, epoch 30 restarts again.
  const s2 = { ...s, t_mult: 2 };
  if (lrAt(s2, 1e-3, 10) !== 1e-3 || lrAt(s2, 1e-3, 30) !== 1e-3) throw new Error("restarts");
  const mid = 1e-4 + (1e-3 - 1e-4) * (1 + Math.cos(Math.PI * 5 / 20)) / 2;
  if (Math.abs(lrAt(s2, 1e-3, 15) - mid) > 1e-15) throw new Error("second cycle");
});

Deno.test("a run writes every file of the run folder; two runs are bitwise identical", async () => {
  await withTmp("lvit-runner-", async (dir) => {
    const a = await runExperiment(exp(dir, tiny()), { ...quiet, out: join(dir, "a") });
    const b = await runExperiment(exp(dir, tiny()), { ...quiet, out: join(dir, "b") });
    for (
      const f of [
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "overlays.png",
        "plots/loss.svg",
        "plots/lr.svg",
        "plots/val.svg",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
      ]
    ) await Deno.stat(join(a.dir, f));
    const s = a.summary!;
    for (
      const k of [
        "experiment",
        "variant",
        "seed",
        "backend",
        "adapter",
        "params",
        "macs",
        "epochs",
        "steps",
        "best_epoch",
        "val",
        "test",
        "train_seconds",
        "step_ms_median",
      ]
    ) if (!(k in s)) throw new Error(`summary.json lacks ${k}`);
    if (!(s.test.dice >= 0 && s.test.dice <= 1)) throw new Error(`test dice ${s.test.dice}`);
    // Both metrics: per-image means (the headline) and pooled over the split's pixels, in
    // summary.json, metrics.jsonl's test record and report.md.
    const pooled = s.test.pooled;
    for (const v of [s.test.iou, pooled?.dice, pooled?.iou]) {
      if (!(typeof v === "number" && v >= 0 && v <= 1)) {
        throw new Error(`test ${JSON.stringify(s.test)}`);
      }
    }
    const onDisk = JSON.parse(await Deno.readTextFile(join(a.dir, "summary.json")));
    if (JSON.stringify(onDisk.test) !== JSON.stringify(s.test)) {
      throw new Error("summary.json test");
    }
    const testRec = (await readMetrics(join(a.dir, "metrics.jsonl"))).find((m) =>
      m.kind === "test"
    );
    if (JSON.stringify(testRec?.pooled) !== JSON.stringify(pooled)) {
      throw new Error(`metrics.jsonl test record: ${JSON.stringify(testRec)}`);
    }
    const report = await Deno.readTextFile(join(a.dir, "report.md"));
    for (
      const row of [
        `| test | Dice (per-image mean) | ${(100 * s.test.dice).toFixed(2)}% | ${
          s.test.dice.toFixed(4)
        } |`,
        `| test | IoU (per-image mean) | ${(100 * s.test.iou).toFixed(2)}% | ${
          s.test.iou.toFixed(4)
        } |`,
        `| test | Dice (pooled over pixels) | ${(100 * pooled.dice).toFixed(2)}% | ${
          pooled.dice.toFixed(4)
        } |`,
        `| test | IoU (pooled over pixels) | ${(100 * pooled.iou).toFixed(2)}% | ${
          pooled.iou.toFixed(4)
        } |`,
      ]
    ) if (!report.includes(row)) throw new Error(`report.md lacks ${row}:\n${report}`);
    if (s.epochs !== 4 || s.steps !== 16) throw new Error(`epochs ${s.epochs} steps ${s.steps}`);
    if (s.best_epoch !== null && s.best_epoch < 2) throw new Error("best before min_save_epoch");
    const preds = [...Deno.readDirSync(join(a.dir, "predictions"))].length;
    if (preds !== 4) throw new Error(`${preds} prediction PNGs, want 4`);
    for (const f of ["best", "last"]) {
      const [ha, hb] = await Promise.all([
        sha256File(join(a.dir, "checkpoints", `${f}.safetensors`)),
        sha256File(join(b.dir, "checkpoints", `${f}.safetensors`)),
      ]);
      if (ha !== hb) throw new Error(`${f}.safetensors differs between two runs`);
    }
    if (a.summary!.test.dice !== b.summary!.test.dice) throw new Error("test dice differs");
    console.log(`test dice ${s.test.dice.toFixed(4)}, best epoch ${s.best_epoch}; sha256 equal`);
  });
});

Deno.test("interrupted mid-epoch and resumed: bitwise the uninterrupted run", async () => {
  await withTmp("lvit-runner-", async (dir) => {
    const full = await runExperiment(exp(dir, tiny()), { ...quiet, out: join(dir, "a") });
    const out = join(dir, "b");
    // Step 6 is mid-epoch 2 (4 steps per epoch) and not a periodic checkpoint (every 3).
    const cut = await runExperiment(exp(dir, tiny()), { ...quiet, out, stopAfterSteps: 6 });
    if (!cut.interrupted || cut.summary) throw new Error("run was not interrupted");
    const r = await runExperiment(exp(dir, tiny()), { ...quiet, out, resume: true });
    for (const f of ["best", "last"]) {
      const [ha, hb] = await Promise.all([
        sha256File(join(full.dir, "checkpoints", `${f}.safetensors`)),
        sha256File(join(r.dir, "checkpoints", `${f}.safetensors`)),
      ]);
      if (ha !== hb) throw new Error(`${f}.safetensors differs after resume`);
    }
    const la = (await readMetrics(join(full.dir, "metrics.jsonl"))).map((m) => m.loss);
    const lb = (await readMetrics(join(r.dir, "metrics.jsonl"))).map((m) => m.loss);
    if (JSON.stringify(la) !== JSON.stringify(lb)) throw new Error(`losses ${la} vs ${lb}`);
    if (r.summary!.test.dice !== full.summary!.test.dice) throw new Error("test dice differs");
  });
});

Deno.test("early stopping: patience counts epochs without a new best", async () => {
  await withTmp("lvit-runner-", async (dir) => {
    // A learning rate too small to help: val Dice rarely improves, so with patience 1 the run
    // stops 2 epochs after its last best (the reference's epoch - best_epoch + 1 > patience with
    // a 0-based epoch), or after epoch patience + 2 when no best was ever saved.
    const text = tiny().replace("lr: 0.01", "lr: 1e-9").replace("epochs: 4", "epochs: 30")
      .replace("min_save_epoch: 2", "min_save_epoch: 2, patience: 1, schedule: { kind: constant }");
    const r = await runExperiment(exp(dir, text), { ...quiet, out: dir });
    const s = r.summary!;
    if (!s.stopped_early) throw new Error("did not stop early");
    const expected = (s.best_epoch ?? 1) + 1 + 1;
    if (s.epochs !== expected) throw new Error(`best ${s.best_epoch}, stopped after ${s.epochs}`);
    const m = await readMetrics(join(r.dir, "metrics.jsonl"));
    const dice = m.filter((x) => x.kind === "epoch").map((x) => x.val_dice as number);
    if (s.best_epoch !== null) {
      const best = dice[s.best_epoch - 1];
      if (dice.slice(s.best_epoch).some((d) => d > best)) {
        throw new Error(`an epoch after the best improved on it: ${dice}`);
      }
    }
  });
});

const cli = (args: string[]) => denoRun(args, ROOT);
const noTrace = assertNoStackTrace;

Deno.test("SIGTERM and kill -9 mid-run, then --resume: bitwise the uninterrupted run", async () => {
  await withTmp("lvit-runner-", async (dir) => {
    // Enough epochs (~4 ms each) that the signal lands mid-run.
    const text = tiny().replace("epochs: 4", "epochs: 1000").replace("CACHE", join(dir, "cache"));
    await Deno.writeTextFile(join(dir, "e.yaml"), text);
    const run = join(ROOT, "lib/cli/run.ts");
    const full = await cli([run, join(dir, "e.yaml"), "--out", join(dir, "a")]);
    if (full.code !== 0) throw new Error(full.text);
    const hashOf = (out: string) => [...Deno.readDirSync(join(out, "tiny", "default"))][0].name;
    for (
      const [signal, out] of [["SIGTERM", join(dir, "b")], ["SIGKILL", join(dir, "c")]] as const
    ) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--unstable-webgpu", run, join(dir, "e.yaml"), "--out", out],
        stdout: "piped",
        stderr: "piped",
        env: { XDG_RUNTIME_DIR: "/tmp" },
      }).spawn();
      // Wait for the first finished epoch, then interrupt wherever the run happens to be.
      const runs = join(out, "tiny", "default");
      for (let i = 0; i < 600; i++) {
        await new Promise((r) => setTimeout(r, 50));
        let dirs: Deno.DirEntry[] = [];
        try {
          dirs = [...Deno.readDirSync(runs)];
        } catch {
          continue;
        }
        if (!dirs.length) continue;
        const m = await readMetrics(join(runs, dirs[0].name, "metrics.jsonl"));
        if (m.length >= 1) break;
      }
      child.kill(signal);
      const st = await child.output();
      const log = new TextDecoder().decode(st.stdout) + new TextDecoder().decode(st.stderr);
      if (signal === "SIGTERM") {
        // A clean stop: checkpoint written, message, exit 130; a plain rerun refuses.
        noTrace(log);
        if (st.code !== 130 || !log.includes("resume with --resume")) {
          throw new Error(`no clean stop (exit ${st.code}):\n${log}`);
        }
        const again = await cli([run, join(dir, "e.yaml"), "--out", out]);
        if (again.code !== 2 || !again.text.includes("--resume")) {
          throw new Error(`rerun without --resume should refuse: ${again.code}\n${again.text}`);
        }
      } else if (st.signal !== "SIGKILL") {
        throw new Error(`the run was not killed (exit ${st.code}):\n${log}`);
      }
      // After kill -9 the run continues from its last periodic or epoch-end checkpoint.
      const res = await cli([run, join(dir, "e.yaml"), "--out", out, "--resume"]);
      if (res.code !== 0) throw new Error(res.text);
      const hash = hashOf(out);
      for (const f of ["best", "last"]) {
        const [ha, hb] = await Promise.all([
          sha256File(join(dir, "a", "tiny", "default", hash, "checkpoints", `${f}.safetensors`)),
          sha256File(join(runs, hash, "checkpoints", `${f}.safetensors`)),
        ]);
        if (ha !== hb) throw new Error(`${f}.safetensors differs after ${signal} + resume`);
      }
    }
    const metrics = join(dir, "b", "tiny", "default");
    const hash = hashOf(join(dir, "b"));
    // `deno task eval` on the finished run reproduces the summary's test Dice.
    const ev = await cli([join(ROOT, "lib/cli/eval.ts"), join(metrics, hash)]);
    if (ev.code !== 0) throw new Error(ev.text);
    const summary = JSON.parse(await Deno.readTextFile(join(metrics, hash, "summary.json")));
    const evj = JSON.parse(
      await Deno.readTextFile(join(metrics, hash, "eval", "test-best.json")),
    );
    if (evj.dice !== summary.test.dice) {
      throw new Error(`eval dice ${evj.dice} != summary ${summary.test.dice}`);
    }
    if (JSON.stringify(evj.pooled) !== JSON.stringify(summary.test.pooled)) {
      throw new Error(`eval pooled ${JSON.stringify(evj.pooled)} != summary's`);
    }
    const pd = summary.test.pooled.dice.toFixed(4), pi = summary.test.pooled.iou.toFixed(4);
    if (!ev.text.includes(`(per-image mean) | pooled dice ${pd}  iou ${pi}`)) {
      throw new Error(`eval output lacks the pooled scores:\n${ev.text}`);
    }
    // last.safetensors carries the trainer state too; eval takes the model's part of it.
    const last = join(metrics, hash, "checkpoints", "last.safetensors");
    const evLast = await cli([join(ROOT, "lib/cli/eval.ts"), last]);
    if (evLast.code !== 0) throw new Error(evLast.text);
    await Deno.stat(join(metrics, hash, "eval", "test-last.json"));
  });
});

Deno.test("bad experiment files and arguments: exit 2, file:line:col, no stack trace", async () => {
  await withTmp("lvit-runner-", async (dir) => {
    const w = (name: string, text: string) => {
      Deno.writeTextFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const ok = tiny().replace("CACHE", join(dir, "cache"));
    w("cyc_a.yaml", "extends: cyc_b.yaml\nname: a\n");
    w("cyc_b.yaml", "extends: cyc_a.yaml\n");
    const cases: [string, string[], string][] = [
      ["yaml syntax", [w("syn.yaml", "name: x\ndata: { dataset: synth\nmodel: y\n")], "syn.yaml:"],
      ["unknown key", [w("unk.yaml", ok.replace("seed: 5", "sed: 5"))], "unk.yaml:2:1"],
      ["wrong type", [w("typ.yaml", ok.replace("seed: 5", "seed: five"))], "typ.yaml:2:7"],
      ["bad enum", [w("enum.yaml", ok.replace("backend: cpu", "backend: tpu"))], "enum.yaml:3:10"],
      ["missing extends", [w("ext.yaml", "extends: nope.yaml\n" + ok)], "ext.yaml:1:10"],
      ["cyclic extends", [join(dir, "cyc_a.yaml")], "cyc_"],
      ["bad --set path", [w("set.yaml", ok), "--set", "train.epochz=2"], "train.epochz"],
    ];
    for (const [what, args, want] of cases) {
      const r = await cli([join(ROOT, "lib/cli/run.ts"), ...args, "--out", join(dir, "runs")]);
      if (r.code !== 2) throw new Error(`${what}: exit ${r.code}\n${r.text}`);
      if (!r.text.includes(want)) throw new Error(`${what}: no '${want}' in:\n${r.text}`);
      noTrace(r.text);
    }
    // A missing data set says where it comes from and the layout expected.
    const miss = w(
      "miss.yaml",
      ok.replace(/data: \{[^\n]*/, `data: { dataset: monuseg, root: ${join(dir, "none")} }`),
    );
    const r = await cli([join(ROOT, "lib/cli/run.ts"), miss, "--out", join(dir, "runs")]);
    if (r.code !== 2 || !r.text.includes("MoNuSeg") || !r.text.includes("Train_Folder")) {
      throw new Error(`missing data: exit ${r.code}\n${r.text}`);
    }
    noTrace(r.text);
  });
});

Deno.test("scoreSplit scores every image of a batch against its own mask", async () => {
  // A stand-in session whose "prediction" is a function of the input image, so the expected
  // per-image scores are known without a model.
  const size = 4, plane = 16, n = 5;
  const masks = Array.from(
    { length: n },
    (_, i) => Float32Array.from({ length: plane }, (_, j) => ((i + j) % 3 === 0 ? 1 : 0)),
  );
  const probs = Array.from(
    { length: n },
    (_, i) => Float32Array.from({ length: plane }, (_, j) => ((i * 7 + j) % 4) / 3),
  );
  const data = {
    n,
    text: null,
    read(idx: readonly number[], x: Float32Array, y: Float32Array) {
      idx.forEach((i, k) => {
        x.fill(i, k * 3 * plane, (k + 1) * 3 * plane);
        y.set(masks[i], k * plane);
      });
      return Promise.resolve();
    },
  };
  const fake = {
    predict(x: Float32Array) {
      const B = x.length / (3 * plane);
      const p = new Float32Array(B * plane);
      for (let k = 0; k < B; k++) p.set(probs[x[k * 3 * plane]], k * plane);
      return Promise.resolve(p);
    },
  } as unknown as Session;
  // Pooled over the split, counted here by hand: P = prob > 0.5 whatever the rule.
  let inter = 0, pred = 0, truth = 0;
  masks.forEach((m, i) =>
    m.forEach((y, j) => {
      const p = probs[i][j] > 0.5 ? 1 : 0;
      inter += p * y;
      pred += p;
      truth += y;
    })
  );
  const pooled = { dice: 2 * inter / (pred + truth), iou: inter / (pred + truth - inter) };
  for (const rule of ["val", "test"] as const) {
    const f = rule === "val" ? valScores : testScores;
    const want = masks.map((m, i) => f(probs[i], m, 0, plane));
    for (const batch of [1, 2, 3]) {
      const got = await scoreSplit(fake, data, { batch, channels: 3, size }, rule);
      if (got.pooled.dice !== pooled.dice || got.pooled.iou !== pooled.iou) {
        throw new Error(`${rule} batch ${batch} pooled ${JSON.stringify(got.pooled)}`);
      }
      for (let i = 0; i < n; i++) {
        if (got.per[i].dice !== want[i].dice || got.per[i].iou !== want[i].iou) {
          throw new Error(`${rule} batch ${batch} image ${i}: ${JSON.stringify(got.per[i])}`);
        }
      }
    }
  }
});
