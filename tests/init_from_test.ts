/**
 * `model.init_from` (issue 14, item 4): the reference's LViT_pretrain. A U-Net checkpoint
 * initialises LViT-T with exactly the tensors whose names and shapes both models have (computed
 * here independently, and checked against the prefixes the reference implies), the rest keeps
 * its seeded initialisation, and init_from.json says which is which. In a run: relative paths
 * resolve against the experiment file, init_from.json is written, a resumed run ignores
 * init_from (bitwise the uninterrupted run), and a missing or unrelated checkpoint is exit 2.
 */
import { dirname, join } from "node:path";
import { assert, assertEquals, expectError, expectRejection } from "./assert.ts";
import { assertNoStackTrace, denoRun, sha256File, withTmp } from "./process.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { buildModel, type ModelName } from "../lib/models/registry.ts";
import { Graph } from "../lib/graph/mod.ts";
import { saveCheckpoint } from "../lib/io/checkpoint.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type OutTensor,
  SafetensorsError,
} from "../lib/io/safetensors.ts";
import { InputError } from "../lib/config/errors.ts";
import { loadExperiment, normalizePath, resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { readMetrics } from "../lib/run/folder.ts";
import {
  INIT_FROM_FILE,
  type InitReport,
  initSession,
  initSummaryLine,
  matchInit,
  readInitSource,
} from "../lib/run/init_from.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const S = 64;

/** The state_dict names and shapes of a model, from its graph alone (no session). */
function graphState(name: ModelName, opts: Record<string, unknown>, size: number) {
  const g = new Graph();
  // deno-lint-ignore no-explicit-any
  buildModel(name, opts as any)({ g, training: true }, g.input("x", [1, 3, size, size]));
  return new Map(
    g.leaves().filter((t) => t.kind === "param" || t.kind === "state").map((t) => [
      t.name!,
      [...t.shape],
    ]),
  );
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  JSON.stringify(a) === JSON.stringify(b);

const bitwise = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

/** The prefixes the reference names for U-Net -> LViT (lvit-reference.md 2, LViT_pretrain). */
const SHARED = /^(inc|down[1-4]|up[1-4]\.nConvs|outc)\./;
const PREFIXES = [
  "inc.",
  ...[1, 2, 3, 4].map((l) => `down${l}.`),
  ...[1, 2, 3, 4].map((l) => `up${l}.nConvs.`),
  "outc.",
];

Deno.test("U-Net -> LViT-T: exactly the tensors with equal names and shapes are copied", async () => {
  await withTmp("lvit-init-", async (dir) => {
    const be = await selectBackend("cpu", true);
    const o = { batch: 1, channels: 3, height: S, width: S };
    const unet = await Session.create(be, buildModel("unet", { baseChannels: 8 }), {
      ...o,
      seed: 1,
    });
    // Values no initialisation produces (batch-norm statistics start at 0 and 1, step counters
    // at 0), so a copied tensor is told apart from one left alone.
    const ck = new Map<string, OutTensor>();
    for (const [n, t] of await unet.state(true)) {
      ck.set(n, { ...t, data: t.data.map((v) => t.dtype === "I64" ? 7 : 1.5 * v + 0.25) });
    }
    unet.destroy();
    const run = join(dir, "unet-run");
    const file = join(run, "checkpoints", "best.safetensors");
    await saveCheckpoint(file, ck, { epoch: "12" });

    const lvit = await Session.create(
      be,
      buildModel("lvit-t", { baseChannels: 8, imageSize: S }),
      { ...o, seed: 2 },
    );
    const before = new Map(
      [...await lvit.state(true)].map(([n, t]) => [n, { ...t, data: t.data.slice() }]),
    );
    const lines: string[] = [];
    const report = await initSession(lvit, await readInitSource(run), dir, (l) => lines.push(l));
    const after = await lvit.state(true);
    lvit.destroy();

    // The expected set, independently: names in both state_dicts with equal shapes.
    const expected = [...ck.keys()].filter((n) =>
      before.has(n) && sameShape(before.get(n)!.shape, ck.get(n)!.shape)
    ).sort();
    const rest = [...before.keys()].filter((n) => !expected.includes(n)).sort();
    assertEquals([...report.transferred].sort(), expected);
    // ... and it is what the reference implies: every LViT-T tensor under inc.*, down1..4.*,
    // up1..4.nConvs.* and outc.*, nothing else, each prefix present.
    assertEquals([...before.keys()].filter((n) => SHARED.test(n)).sort(), expected);
    for (const p of PREFIXES) assert(expected.some((n) => n.startsWith(p)), `nothing under ${p}`);
    assertEquals(before.size, 541);
    console.log(`U-Net -> LViT-T: ${expected.length} of ${before.size} tensors transferred`);

    // Copied tensors hold the checkpoint's values (and did not before); the rest is untouched.
    for (const n of expected) {
      assert(bitwise(after.get(n)!.data, ck.get(n)!.data), `${n} is not the checkpoint's`);
      assert(!bitwise(before.get(n)!.data, ck.get(n)!.data), `${n} held the value already`);
    }
    for (const n of rest) {
      assert(bitwise(after.get(n)!.data, before.get(n)!.data), `${n} changed`);
    }

    // The report lists the rest: model tensors left initialised, checkpoint tensors unused.
    assertEquals([...report.left_initialised].sort(), rest);
    const notInModel = [...ck.keys()].filter((n) => !before.has(n)).sort();
    assertEquals([...report.not_in_model].sort(), notInModel);
    assertEquals(notInModel, [1, 2, 3, 4].flatMap((l) => [`up${l}.up.bias`, `up${l}.up.weight`]));
    assertEquals(report.shape_mismatch, []);
    assertEquals(report.ignored, []);
    assertEquals([report.model_tensors, report.checkpoint_tensors], [before.size, ck.size]);
    assertEquals([report.path, report.checkpoint], [run, file]);
    assertEquals(report.checkpoint_metadata, { epoch: "12" });
    assertEquals(report.sha256, await sha256File(file));
    assertEquals(JSON.parse(await Deno.readTextFile(join(dir, INIT_FROM_FILE))), report);
    assertEquals(lines.length, 1);
    assert(
      lines[0].startsWith(
        `init: ${expected.length} of ${before.size} tensors from ${file} (epoch 12, sha256 ` +
          `${report.sha256.slice(0, 12)}); ${rest.length} left initialised; 8 checkpoint ` +
          `tensors unused (8 not in the model, 0 of another shape); details in init_from.json`,
      ),
      lines[0],
    );

    // At the reference's sizes (base 64, 224x224) the same names match, with equal shapes.
    const u = graphState("unet", {}, 224), l = graphState("lvit-t", {}, 224);
    const shared = [...u.keys()].filter((n) => l.has(n));
    assertEquals(shared.sort(), expected);
    for (const n of shared) assert(sameShape(u.get(n)!, l.get(n)!), `${n}: shapes differ`);
  });
});

/** A checkpoint source from tensors given as name -> [shape, value, dtype?]. */
function source(tensors: Record<string, [number[], number, "I64"?]>): {
  path: string;
  file: string;
  bytes: Uint8Array;
  sha256: string;
} {
  const m = new Map<string, OutTensor>();
  for (const [n, [shape, v, dtype]] of Object.entries(tensors)) {
    const size = shape.reduce((a, b) => a * b, 1);
    m.set(n, { shape, data: new Float32Array(size).fill(v), dtype });
  }
  return { path: "ck", file: "ck.safetensors", bytes: encodeSafetensors(m), sha256: "0" };
}

Deno.test("matchInit: prefixes, scalars, shape mismatches, trainer state and unrelated files", () => {
  const model = new Map<string, readonly number[]>([
    ["a.weight", [2, 3]],
    ["a.bias", [2]],
    ["bn.num_batches_tracked", [1]],
    ["b.weight", [4]],
  ]);
  const { values, report } = matchInit(
    source({
      "module.a.weight": [[2, 3], 0.5], // DataParallel's prefix is dropped
      "a.bias": [[3], 1],
      "bn.num_batches_tracked": [[], 9, "I64"], // PyTorch's [] scalar fits our [1]
      "c.weight": [[1], 2],
      "optim.m.a.weight": [[2, 3], 3], // trainer state of a last.safetensors
      "x.total_ops": [[1], 4], // thop's counters
    }),
    model,
  );
  assertEquals([...values.keys()].sort(), ["a.weight", "bn.num_batches_tracked"]);
  assertEquals(values.get("a.weight"), new Float32Array(6).fill(0.5));
  assertEquals(values.get("bn.num_batches_tracked"), [9]);
  const want: Omit<InitReport, "checkpoint_metadata"> = {
    path: "ck",
    checkpoint: "ck.safetensors",
    sha256: "0",
    prefix: null,
    model_tensors: 4,
    checkpoint_tensors: 6,
    transferred: ["a.weight", "bn.num_batches_tracked"],
    not_in_model: ["c.weight"],
    shape_mismatch: [{ name: "a.bias", checkpoint: [3], model: [2] }],
    left_initialised: ["a.bias", "b.weight"],
    ignored: ["optim.m.a.weight", "x.total_ops"],
  };
  const { checkpoint_metadata, ...got } = report;
  assertEquals(got, want);
  assertEquals(checkpoint_metadata, {});

  // Nothing in common, or only batch-norm step counters: almost certainly the wrong file.
  expectError(
    "unrelated",
    InputError,
    () => matchInit(source({ "foo": [[2], 1], "a.weight": [[3, 2], 1] }), model),
    "ck.safetensors: shares no tensor with the model",
    "Not in the model: foo",
    "foo",
    "a.weight [3, 2] vs [2, 3]",
  );
  expectError(
    "counters only",
    InputError,
    () =>
      matchInit(
        source({ "bn.num_batches_tracked": [[], 1, "I64"], "a.bias": [[4], 0] }),
        model,
      ),
    "shares no tensor",
  );
  // A wider U-Net shares only the counters with LViT-T: refused, naming the shapes.
  const wide = graphState("unet", { baseChannels: 16 }, S);
  const m = new Map<string, OutTensor>();
  for (const [n, shape] of wide) {
    m.set(n, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  }
  expectError(
    "wider U-Net",
    InputError,
    () =>
      matchInit(
        { path: "w", file: "w.safetensors", bytes: encodeSafetensors(m), sha256: "0" },
        graphState("lvit-t", { baseChannels: 8, imageSize: S }, S),
      ),
    "shares no tensor",
    "inc.conv.weight [16, 3, 3, 3] vs [8, 3, 3, 3]",
  );
  expectError("not safetensors", SafetensorsError, () =>
    matchInit(
      { path: "z", file: "z.safetensors", bytes: new Uint8Array(20), sha256: "0" },
      model,
    ));
});

/** {@link source} with every tensor of `names` (name -> shape) filled with `fill`. */
const filled = (names: Map<string, readonly number[]>, fill = 0) =>
  source(Object.fromEntries([...names].map(([n, shape]) => [n, [[...shape], fill]])));

Deno.test("init_prefix 'encoder.': a torchvision ResNet-34 state_dict initialises unetpp's encoder", () => {
  const model = graphState("unetpp", {}, S);
  const enc = [...model.keys()].filter((n) => n.startsWith("encoder.")).sort();
  // smp's ResNet-34 encoder is torchvision's without fc (baselines-reference.md 3.2): the
  // stand-in has torchvision's names (conv1.weight, layer1.0.bn1.running_mean, ...) and fc.
  const r34 = new Map<string, readonly number[]>(
    enc.map((n) => [n.slice("encoder.".length), model.get(n)!]),
  );
  r34.set("fc.weight", [1000, 512]);
  r34.set("fc.bias", [1000]);
  assert(r34.has("conv1.weight") && r34.has("layer4.2.bn2.running_var"), "not ResNet-34 names");
  const { values, report } = matchInit(filled(r34, 0.5), model, "encoder.");
  assertEquals(report.prefix, "encoder.");
  assertEquals([...report.transferred].sort(), enc);
  assertEquals(enc.length > 100, true);
  assertEquals(report.not_in_model, ["fc.weight", "fc.bias"]);
  assertEquals(
    [...report.left_initialised].sort(),
    [...model.keys()].filter((n) => !n.startsWith("encoder.")).sort(),
  );
  assertEquals(values.get("encoder.conv1.weight")![0], 0.5);
  assert(
    initSummaryLine(report).startsWith(
      `init: ${enc.length} of ${model.size} tensors from ck.safetensors as encoder.* (sha256 `,
    ),
    initSummaryLine(report),
  );
  // Without the prefix the same file shares nothing with the model: refused, and a wrong
  // prefix is named in the message.
  expectError(
    "no prefix",
    InputError,
    () => matchInit(filled(r34), model),
    "ck.safetensors: shares no tensor with the model (no name with the same shape",
    "Not in the model: bn1.bias, bn1.num_batches_tracked",
  );
  expectError(
    "wrong prefix",
    InputError,
    () => matchInit(filled(r34), model, "backbone."),
    "no name prefixed with 'backbone.' (model.init_prefix) with the same shape",
  );
});

Deno.test("init_prefix: part of the config hash, needs init_from, names only", () => {
  const base = "name: t\ndata: { dataset: synth }\nmodel: { name: unet-small";
  const r = (text: string) => resolveExperimentText("/x/e.yaml", text);
  const plain = r(`${base}, init_from: a.safetensors }\n`);
  const pre = r(`${base}, init_from: a.safetensors, init_prefix: inc. }\n`);
  assertEquals(pre.config.model.init_prefix, "inc.");
  assert(pre.hash !== plain.hash, "init_prefix is not part of the config hash");
  assertEquals("init_prefix" in plain.config.model, false);
  expectError(
    "without init_from",
    InputError,
    () => r(`${base},\n  init_prefix: inc. }\n`),
    "/x/e.yaml:4:16",
    "model.init_prefix needs model.init_from",
  );
  expectError(
    "not a name prefix",
    InputError,
    () => r(`${base}, init_from: a.safetensors, init_prefix: "../x" }\n`),
    "model.init_prefix",
    "a state_dict name prefix",
  );
});

Deno.test("readInitSource: a file, a run folder's best then last, missing paths", async () => {
  await withTmp("lvit-init-", async (dir) => {
    const t = new Map<string, OutTensor>([["a", { shape: [1], data: Float32Array.of(1) }]]);
    const runDir = join(dir, "run");
    const best = join(runDir, "checkpoints", "best.safetensors");
    const last = join(runDir, "checkpoints", "last.safetensors");
    await saveCheckpoint(last, t);
    assertEquals((await readInitSource(runDir)).file, last);
    await saveCheckpoint(best, t, { epoch: "3" });
    const src = await readInitSource(runDir);
    assertEquals([src.path, src.file, src.sha256], [runDir, best, await sha256File(best)]);
    assertEquals((await readInitSource(last)).file, last);
    await expectRejection(
      "missing",
      InputError,
      () => readInitSource(join(dir, "nope")),
      `model.init_from: ${join(dir, "nope")}: no such file or folder`,
    );
    await expectRejection(
      "no checkpoints",
      InputError,
      () => readInitSource(dir),
      `${dir}: a folder without checkpoints/best.safetensors`,
    );
  });
});

Deno.test("init_from paths resolve against the file that sets them; --set against the cwd", () => {
  const base = "name: t\ndata: { dataset: synth }\nmodel: { name: unet-small";
  const files: Record<string, string> = {
    "/x/base/b.yaml": `${base}, init_from: ck/b.safetensors }\n`,
  };
  const read = (p: string) => {
    if (!(p in files)) throw new Deno.errors.NotFound(p);
    return files[p];
  };
  const r = (file: string, text: string, sets: string[] = []) =>
    resolveExperimentText(file, text, sets, read);
  const inBase = r("/x/e/e.yaml", "extends: ../base/b.yaml\n");
  assertEquals(inBase.initFrom, "/x/base/ck/b.safetensors");
  // The config (and its hash) keeps the value as written.
  assertEquals(inBase.config.model.init_from, "ck/b.safetensors");
  const own = r("/x/e/e.yaml", "extends: ../base/b.yaml\nmodel: { init_from: ../runs/u }\n");
  assertEquals(own.initFrom, "/x/runs/u");
  assertEquals(r("e.yaml", `${base}, init_from: /abs/u }\n`).initFrom, "/abs/u");
  assertEquals(r("a/e.yaml", `${base}, init_from: r/u }\n`).initFrom, "a/r/u");
  const set = r("/x/e/e.yaml", "extends: ../base/b.yaml\n", ["model.init_from=runs/v"]);
  assertEquals(set.initFrom, "runs/v");
  assert(set.hash !== inBase.hash, "init_from is part of the config hash");
  // Unset (or null): none, and a config without it keeps the hash it had before the key existed.
  const none = r("e.yaml", `${base} }\n`);
  assertEquals([none.initFrom, "init_from" in none.config.model], [null, false]);
  assertEquals(r("/x/e/e.yaml", "extends: ../base/b.yaml\n", ["model.init_from="]).initFrom, null);
});

Deno.test("experiments/monuseg-pretrained.yaml: LViT-T of monuseg.yaml from the U-Net's default run", async () => {
  const file = join(ROOT, "experiments/monuseg-pretrained.yaml");
  const p = await loadExperiment(file);
  const u = await loadExperiment(join(ROOT, "experiments/unet-monuseg.yaml"));
  const m = await loadExperiment(join(ROOT, "experiments/monuseg.yaml"));
  // Where `deno task run experiments/unet-monuseg.yaml` lands by default (--out runs).
  assertEquals(p.initFrom, normalizePath(join(ROOT, "runs", u.config.name, "default", u.hash)));
  assertEquals(u.config.variant, "default");
  const { init_from: _, ...model } = p.config.model;
  assertEquals({ ...p.config, variant: "default", model }, m.config);
  assertEquals([p.config.model.name, u.config.model.name], ["lvit-t", "unet"]);
  assertEquals(p.config.model.base_channels, u.config.model.base_channels);
});

/** A tiny experiment: U-Net 4-8 on 32x32 generated data, cpu (as tests/runner_test.ts). */
function tiny(dir: string, name: string, model = "") {
  return [
    `name: ${name}`,
    "seed: 5",
    "backend: cpu",
    `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    `model: { name: unet-small, widths: [4, 8], image_size: 32${model} }`,
    "train: { epochs: 3, batch: 2, lr: 0.01, min_save_epoch: 1 }",
    "eval: { overlays: 1, save_predictions: false }",
  ].join("\n") + "\n";
}

Deno.test("a run with init_from: init_from.json, ignored on --resume, bad paths exit 2", async () => {
  await withTmp("lvit-init-run-", async (dir) => {
    const quiet = { progress: false, signals: false, log: () => {} };
    const src = await runExperiment(
      resolveExperimentText(join(dir, "src.yaml"), tiny(dir, "src")),
      { ...quiet, out: join(dir, "runs") },
    );
    // The experiment sits in cfg/ and names the source run relative to itself.
    const rel = `../runs/src/default/${src.dir.split("/").pop()}`;
    const text = tiny(dir, "dst", `, init_from: ${rel}`);
    const yaml = join(dir, "cfg", "dst.yaml");
    await Deno.mkdir(dirname(yaml));
    await Deno.writeTextFile(yaml, text);
    const exp = () => resolveExperimentText(yaml, text);
    assertEquals(exp().initFrom, src.dir);

    const log: string[] = [];
    const full = await runExperiment(exp(), {
      ...quiet,
      out: join(dir, "a"),
      log: (l) => log.push(l),
    });
    const rep = JSON.parse(await Deno.readTextFile(join(full.dir, INIT_FROM_FILE))) as InitReport;
    const best = join(src.dir, "checkpoints", "best.safetensors");
    assertEquals([rep.path, rep.checkpoint, rep.sha256], [src.dir, best, await sha256File(best)]);
    // The same model: every tensor comes over, nothing is left or unused.
    assert(rep.model_tensors > 0, "no model tensors");
    assertEquals(rep.transferred.length, rep.model_tensors);
    assertEquals([rep.left_initialised, rep.not_in_model, rep.shape_mismatch], [[], [], []]);
    const initLines = log.filter((l) => l.startsWith("init: "));
    assertEquals(initLines.length, 1);
    assert(initLines[0].startsWith(`init: ${rep.model_tensors} of ${rep.model_tensors} tensors`));
    // Training started from the source's weights: the first epoch's loss is another one.
    const loss1 = async (d: string) =>
      (await readMetrics(join(d, "metrics.jsonl"))).find((m) => m.kind === "epoch")!.loss;
    const [la, lb] = [await loss1(src.dir), await loss1(full.dir)];
    assert(la !== lb, `epoch 1 loss ${la} both with and without init_from`);

    // init_prefix: a checkpoint of the first block alone, its names without the block's
    // prefix, initialises exactly that block.
    const first = rep.transferred[0].split(".")[0] + ".";
    const block = new Map<string, OutTensor>();
    for (const [n, t] of decodeSafetensors(await Deno.readFile(best)).tensors) {
      const dtype = t.dtype === "I64" ? "I64" : undefined;
      if (n.startsWith(first)) block.set(n.slice(first.length), { ...t, dtype });
    }
    const blockFile = join(dir, "block.safetensors");
    await saveCheckpoint(blockFile, block);
    const preLog: string[] = [];
    const pre = await runExperiment(
      resolveExperimentText(
        yaml,
        tiny(dir, "dst", `, init_from: ${blockFile}, init_prefix: ${first}`),
      ),
      { ...quiet, out: join(dir, "p"), log: (l) => preLog.push(l) },
    );
    const pr = JSON.parse(await Deno.readTextFile(join(pre.dir, INIT_FROM_FILE))) as InitReport;
    assertEquals(pr.prefix, first);
    assertEquals(
      [...pr.transferred].sort(),
      rep.transferred.filter((n) => n.startsWith(first)).sort(),
    );
    assert(pr.transferred.length > 0 && pr.left_initialised.length > 0, JSON.stringify(pr));
    assert(
      preLog.some((l) => l.startsWith(`init: ${pr.transferred.length} of ${rep.model_tensors} `)),
      preLog.join("\n"),
    );

    // Interrupted and resumed: the run's own checkpoint wins, init_from is not read (its run
    // is gone by then) and the result is bitwise the uninterrupted run's.
    const out = join(dir, "b");
    const cut = await runExperiment(exp(), { ...quiet, out, stopAfterSteps: 5 });
    assert(cut.interrupted, "not interrupted");
    await Deno.rename(src.dir, `${src.dir}-moved`);
    const resumedLog: string[] = [];
    const res = await runExperiment(exp(), {
      ...quiet,
      out,
      resume: true,
      log: (l) => resumedLog.push(l),
    });
    assert(!resumedLog.some((l) => l.startsWith("init: ")), resumedLog.join("\n"));
    for (const f of ["best", "last"]) {
      const [ha, hb] = await Promise.all([
        sha256File(join(full.dir, "checkpoints", `${f}.safetensors`)),
        sha256File(join(res.dir, "checkpoints", `${f}.safetensors`)),
      ]);
      assert(ha === hb, `${f}.safetensors differs after resume`);
    }

    // On the command line: the source is gone now, so a fresh run is exit 2 naming the path,
    // before the run folder is made; so is a file sharing no tensor with the model.
    const run = join(ROOT, "lib/cli/run.ts");
    const miss = await denoRun([run, yaml, "--out", join(dir, "c")], ROOT);
    assertNoStackTrace(miss.text);
    assert(miss.code === 2, `exit ${miss.code}:\n${miss.text}`);
    assert(miss.text.includes(`model.init_from: ${src.dir}: no such file or folder`), miss.text);
    assert(!(await Deno.stat(join(dir, "c")).then(() => true, () => false)), "folder made");
    const foo = join(dir, "foo.safetensors");
    await saveCheckpoint(foo, new Map([["foo", { shape: [1], data: Float32Array.of(1) }]]));
    const other = await denoRun([
      run,
      yaml,
      "--out",
      join(dir, "c"),
      "--set",
      `model.init_from=${foo}`,
    ], ROOT);
    assertNoStackTrace(other.text);
    assert(other.code === 2, `exit ${other.code}:\n${other.text}`);
    assert(other.text.includes(`${foo}: shares no tensor with the model`), other.text);
  });
});
