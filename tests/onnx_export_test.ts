/**
 * ONNX export (lib/export/onnx.ts, `deno task export`) checked in onnxruntime-web (wasm):
 * - A small U-Net and a tiny LViT with text, with random weights (batch-norm statistics and
 *   affine parameters included), give the cpu backend's probabilities to 1e-5 at batch 1 and 2
 *   from one exported file: the batch dimension is symbolic.
 * - The file's structure: opset 17, inputs `image` [N,3,H,W] and `text` [N,L,768] (only where
 *   the model reads text), output `probabilities` [N,1,H,W], standard ONNX ops only, weights as
 *   initializers under their state_dict names, metadata kept.
 * - An op without a mapping is bad input (exit 2) naming the op; hostile metadata in a model file
 *   is bad input and pollutes no prototype.
 * - End to end: a trained run exported by the CLI and run by `predict --engine ort` writes the
 *   masks `predict` writes with our engine, and the metadata carries config and preprocessing.
 */
import { join } from "node:path";
import { bce, conv2d, sigmoid } from "../lib/graph/mod.ts";
import { InputError } from "../lib/config/errors.ts";
import { buildModel, type ModelFn } from "../lib/models/registry.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { Inference } from "../lib/train/inference.ts";
import type { WeightHolder } from "../lib/train/weights.ts";
import { BATCH_DIM, modelToOnnx, ONNX_OPSET } from "../lib/export/onnx.ts";
import { decodeModel, type ModelMsg } from "../lib/export/onnx_proto.ts";
import { tinyLvitRun } from "./tiny_run.ts";
import { predict } from "../lib/run/predict.ts";
import { META } from "../lib/run/export.ts";
import { onnxModelInfo } from "../lib/run/predict_ort.ts";
import { readRunConfig } from "../lib/run/evaluate.ts";
import { decodePng, importOrt } from "../lib/deps.ts";
import { assert, assertEquals } from "./assert.ts";
import { assertNoStackTrace, denoRun, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const EXPORT_CLI = join(ROOT, "lib/cli/export.ts");
const PREDICT_CLI = join(ROOT, "lib/cli/predict.ts");
// Observed: 3e-8. 1e-5 leaves a wide margin and still catches e.g. a LayerNormalization epsilon
// off by 1e-2, which 1e-4 lets through (the random LViT's transformer path is damped).
const TOL = 1e-5;

/** Deterministic values in [lo, hi) from a seed (an LCG; quality is not the point). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + (hi - lo) * (s / 2 ** 32);
  });
}

/**
 * The session's seeded initial weights (PyTorch's default init) with every 1-D tensor (norm
 * weights and biases, batch-norm running statistics, biases) redrawn around its usual value, so
 * that a mix-up of statistics or parameters would show while the probabilities stay away from
 * 0 and 1. LViT's text path (text modules, CTBN3) is scaled up 3x: at its initial scale a text
 * moves the output by less than the tolerance, so a wrong text path could pass unseen.
 */
async function randomWeights(s: WeightHolder): Promise<Map<string, Float32Array>> {
  const w = new Map<string, Float32Array>();
  let k = 1;
  for (const [name, t] of await s.state(true)) {
    if (name.endsWith("num_batches_tracked")) continue;
    const n = t.data.length;
    const text = /^text_module|\.CTBN3\./.test(name);
    const v = t.shape.length !== 1
      ? Float32Array.from(t.data, (x) => (text ? 3 * x : x))
      : name.endsWith("running_var")
      ? uniform(n, k++, 0.5, 1.5)
      : name.endsWith(".weight")
      ? uniform(n, k++, 0.7, 1.3)
      : uniform(n, k++, -0.2, 0.2);
    w.set(name, v);
  }
  return w;
}

/** The declared shape of a graph input or output: sizes, and the symbolic name where dynamic. */
function dims(m: ModelMsg, io: "input" | "output", name: string): (number | string)[] {
  const v = m.graph[io].find((v) => v.name === name);
  assert(v, `no ${io} named ${name}`);
  return v.type.tensor_type.shape.dim.map((d) => "dim_param" in d ? d.dim_param : d.dim_value);
}

/** Standard operators (ai.onnx, opset 17) the export may write. */
const STANDARD = new Set(
  ("Conv ConvTranspose BatchNormalization LayerNormalization Gemm MatMul Transpose Reshape " +
    "Expand Softmax Relu Sigmoid Add Sub Mul Div Neg Exp Log Sqrt Reciprocal Erf MaxPool Resize " +
    "Concat Slice Pad ReduceSum ReduceMax Identity Greater Less Cast").split(" "),
);

Deno.test("onnx export: every registry family (small) equals the cpu backend in onnxruntime-web at batch 1 and 2", async () => {
  const ort = await importOrt();
  ort.env.wasm.numThreads = 1;
  const backend = await selectBackend("cpu");
  const small = { baseChannels: 8, heads: 2, imageSize: 64 };
  const cases: [string, ModelFn, number][] = [
    ["unet-small", buildModel("unet-small", { widths: [4, 8, 16] }), 64],
    ["unet", buildModel("unet", { baseChannels: 4 }), 64],
    ["lvit-t", buildModel("lvit-t", small), 64],
    ["lvit-tw", buildModel("lvit-tw", small), 64],
    [
      "unetpp",
      buildModel("unetpp", {
        encoderWidth: 4,
        encoderBlocks: [1, 1, 1, 1],
        decoderChannels: [16, 8, 8, 4, 4],
        imageSize: 64,
      }),
      64,
    ],
    ["gtunet", buildModel("gtunet", { baseChannels: 16, imageSize: 64 }), 64],
    ["uctransnet", buildModel("uctransnet", { baseChannels: 4, depth: 2, imageSize: 32 }), 32],
  ];
  for (const [name, fn, S] of cases) {
    const sessions = new Map<number, Session>();
    for (const B of [1, 2]) {
      sessions.set(
        B,
        await Session.create(backend, fn, { batch: B, channels: 3, height: S, width: S, seed: 7 }),
      );
    }
    try {
      const weights = await randomWeights(sessions.get(1)!);
      for (const s of sessions.values()) s.loadState(weights);
      const ex = modelToOnnx(fn, {
        channels: 3,
        size: S,
        weights,
        name,
        metadata: { "lvit.model": name },
      });
      const readsText = name === "lvit-t";
      assertEquals(ex.inputs, readsText ? ["image", "text"] : ["image"]);

      // Structure.
      const m = decodeModel(ex.bytes);
      assertEquals(m.ir_version, 8);
      assertEquals(m.opset_import.map((o) => [o.domain ?? "", o.version]), [["", ONNX_OPSET]]);
      assert(ONNX_OPSET >= 17, "opset 17 or later");
      assertEquals(dims(m, "input", "image"), [BATCH_DIM, 3, S, S]);
      if (readsText) assertEquals(dims(m, "input", "text"), [BATCH_DIM, 10, 768]);
      assertEquals(m.graph.output.map((o) => o.name), ["probabilities"]);
      assertEquals(dims(m, "output", "probabilities"), [BATCH_DIM, 1, S, S]);
      assertEquals(m.metadata_props, [{ key: "lvit.model", value: name }]);
      for (const n of m.graph.node) {
        assert(!n.domain, `${n.name}: default domain`);
        assert(STANDARD.has(n.op_type), `${n.name}: ${n.op_type} is not a standard op`);
      }
      const inits = new Map(m.graph.initializer.map((t) => [t.name, t]));
      for (const [k, v] of weights) {
        const t = inits.get(k);
        if (!t) continue; // registered but unused by the evaluation graph
        assertEquals(t.raw_data.length, v.length * 4);
      }
      const bn = m.graph.node.filter((n) => n.op_type === "BatchNormalization");
      assert(bn.length > 0, "batch norms exported as BatchNormalization");
      assert(
        bn.every((n) => n.input[3].endsWith("running_mean") && n.input[4].endsWith("running_var")),
        "BatchNormalization reads the running statistics by their state_dict names",
      );
      if (readsText) {
        assert(m.graph.node.some((n) => n.op_type === "LayerNormalization"), "layer norms");
      }

      // Values: one file, batch 1 and batch 2.
      const ortSession = await ort.InferenceSession.create(ex.bytes, {
        executionProviders: ["wasm"],
      });
      try {
        for (const [B, s] of sessions) {
          const x = uniform(B * 3 * S * S, 100 + B, 0, 1);
          const text = uniform(B * 10 * 768, 200 + B, -1, 1);
          const feeds = { image: new ort.Tensor("float32", x, [B, 3, S, S]) };
          const r = await ortSession.run(
            readsText ? { ...feeds, text: new ort.Tensor("float32", text, [B, 10, 768]) } : feeds,
          );
          const p = r.probabilities;
          assertEquals(p.dims, [B, 1, S, S]);
          const got = p.data as Float32Array;
          const want = await s.predict(x, readsText ? { text } : {});
          let max = 0, spread = 0, inside = 0;
          for (let i = 0; i < want.length; i++) {
            max = Math.max(max, Math.abs(got[i] - want[i]));
            spread = Math.max(spread, Math.abs(want[i] - want[0]));
            if (want[i] > 0.01 && want[i] < 0.99) inside++;
          }
          console.log(
            `${name} ${S}x${S} batch ${B}: max |ort - cpu| = ${max.toExponential(2)} ` +
              `(${(ex.bytes.length / 1024).toFixed(0)} KiB, ${ex.nodes} ONNX nodes)`,
          );
          assert(max <= TOL, `${name} batch ${B}: max |ort - cpu| ${max} > ${TOL}`);
          // Neither constant nor saturated: the comparison means something.
          assert(spread > 1e-3, `${name} batch ${B}: probabilities vary (${spread})`);
          assert(
            inside > want.length / 2,
            `${name} batch ${B}: ${inside} of ${want.length} in (0.01, 0.99)`,
          );
          if (readsText) {
            // The text input matters: another text moves the probabilities well past TOL.
            const other = await ortSession.run({
              ...feeds,
              text: new ort.Tensor("float32", uniform(text.length, 300 + B, -1, 1), [B, 10, 768]),
            });
            const q = other.probabilities.data as Float32Array;
            const moved = q.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i])), 0);
            assert(moved > 10 * TOL, `${name} batch ${B}: the text changes little (${moved})`);
          }
        }
      } finally {
        await ortSession.release();
      }
    } finally {
      for (const s of sessions.values()) s.destroy();
    }
  }
});

Deno.test("onnx export: the reference LViT-T at 224 equals the cpu backend in onnxruntime-web", async () => {
  const ort = await importOrt();
  ort.env.wasm.numThreads = 1;
  const fn = buildModel("lvit-t");
  const m = await Inference.create(await selectBackend("cpu"), fn, { size: 224, seed: 7 });
  try {
    const weights = await randomWeights(m);
    m.loadState(weights);
    const ex = modelToOnnx(fn, { channels: 3, size: 224, weights, name: "lvit-t" });
    const session = await ort.InferenceSession.create(ex.bytes, { executionProviders: ["wasm"] });
    try {
      const x = uniform(3 * 224 * 224, 11, 0, 1);
      const text = uniform(10 * 768, 12, -1, 1);
      const r = await session.run({
        image: new ort.Tensor("float32", x, [1, 3, 224, 224]),
        text: new ort.Tensor("float32", text, [1, 10, 768]),
      });
      const got = r.probabilities.data as Float32Array;
      const want = (await m.forward(x, { text })).probabilities;
      assertEquals(got.length, want.length);
      const max = want.reduce((w, v, i) => Math.max(w, Math.abs(v - got[i])), 0);
      console.log(
        `lvit-t 224x224 (reference size): max |ort - cpu| = ${max.toExponential(2)} ` +
          `(${(ex.bytes.length / 2 ** 20).toFixed(1)} MiB, ${ex.nodes} ONNX nodes)`,
      );
      assert(max <= TOL, `lvit-t 224: max |ort - cpu| ${max} > ${TOL}`);
    } finally {
      await session.release();
    }
  } finally {
    m.destroy();
  }
});

Deno.test("onnx export: an op without a mapping is bad input naming the op", () => {
  // bce is a loss: training graphs only.
  const fn: ModelFn = (c, x) => {
    const w = c.g.param("w", [1, 3, 1, 1], { kind: "const", value: 0.5 });
    const p = sigmoid(conv2d(x, w));
    return bce(p, sigmoid(p));
  };
  let err: unknown = null;
  try {
    modelToOnnx(fn, {
      channels: 3,
      size: 8,
      weights: new Map([["w", new Float32Array(3)]]),
    });
  } catch (e) {
    err = e;
  }
  assert(err instanceof InputError, `an InputError (exit 2), got ${err}`);
  assert((err as Error).message.includes("'bce'"), (err as Error).message);
  // A missing weight is bad input too, naming the tensor.
  let missing: unknown = null;
  try {
    modelToOnnx(
      (c, x) => sigmoid(conv2d(x, c.g.param("w", [1, 3, 1, 1], { kind: "const", value: 1 }))),
      {
        channels: 3,
        size: 8,
        weights: new Map(),
      },
    );
  } catch (e) {
    missing = e;
  }
  assert(missing instanceof InputError && missing.message.includes("w [1, 3, 1, 1]"), `${missing}`);
});

Deno.test("onnx export: hostile metadata in a model file pollutes no prototype", () => {
  const fn = buildModel("unet-small", { widths: [2, 4] });
  const weights = new Map(
    stateDict(fn, { size: 16 }).map((
      e,
    ) => [e.name, new Float32Array(Math.max(1, e.shape.reduce((a, b) => a * b, 1)))]),
  );
  const ex = modelToOnnx(fn, {
    channels: 3,
    size: 16,
    weights,
    metadata: {
      "__proto__": '{"polluted": 1}',
      [META.preprocessing]: '{"__proto__": {"polluted": 1}, "constructor": {"prototype": 1}}',
    },
  }).bytes;
  let err: unknown = null;
  try {
    onnxModelInfo("hostile.onnx", decodeModel(ex));
  } catch (e) {
    err = e;
  }
  assert(err instanceof InputError, `${err}`);
  assertEquals(({} as Record<string, unknown>).polluted, undefined);
  assertEquals(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"), false);
});

Deno.test("onnx export: deno task export + predict --engine ort give predict's masks (LViT with text)", async () => {
  await withTmp("lvit-onnx-", async (dir) => {
    const { run } = await tinyLvitRun(dir, "tiny", 3);
    let test = "";
    for await (const e of Deno.readDir(join(dir, "cache", "synth"))) {
      test = join(dir, "cache", "synth", e.name, "Test_Folder", "img");
    }
    const file = join(dir, "m.onnx");
    const ex = await denoRun([EXPORT_CLI, run.dir, "--format", "onnx", "--out", file]);
    assert(ex.code === 0, ex.text);
    assert(ex.text.includes("opset 17"), ex.text);

    const m = decodeModel(await Deno.readFile(file));
    const meta = new Map(m.metadata_props.map((p) => [p.key, p.value]));
    assertEquals(meta.get(META.model), "lvit-t");
    assertEquals(meta.get(META.configHash), (await readRunConfig(run.dir)).hash);
    assertEquals(JSON.parse(meta.get(META.preprocessing)!).size, 64);
    assertEquals(JSON.parse(meta.get(META.preprocessing)!).channel_order, "BGR");
    assertEquals(JSON.parse(meta.get(META.text)!), { tokens: 4, dim: 768, encoder: "builtin" });
    assert(meta.get(META.config)!.includes("lvit-t"), "the resolved config");

    const text = "Bilateral pulmonary infection, two infected areas.";
    const ortOut = join(dir, "ort"), ownOut = join(dir, "own");
    const pr = await denoRun([
      PREDICT_CLI,
      "--engine",
      "ort",
      file,
      test,
      "--text",
      text,
      "--probabilities",
      "--out",
      ortOut,
    ]);
    assert(pr.code === 0, pr.text);
    const own = await predict(run.dir, [test], {
      text,
      probabilities: true,
      out: ownOut,
      log: () => {},
    });
    assertEquals(own.images.length, 3);
    const summary = JSON.parse(await Deno.readTextFile(join(ortOut, "predict.json")));
    assertEquals(summary.images.length, 3);
    assertEquals(summary.engine, "onnxruntime-web (wasm)");
    for (const im of own.images) {
      const name = im.mask.slice(ownOut.length);
      const a = decodePng(await Deno.readFile(im.mask));
      const b = decodePng(await Deno.readFile(join(ortOut, name)));
      const pa = decodePng(await Deno.readFile(im.probabilities!));
      const pb = decodePng(
        await Deno.readFile(join(ortOut, im.probabilities!.slice(ownOut.length))),
      );
      assertEquals([b.width, b.height], [a.width, a.height]);
      let differ = 0;
      for (let i = 0; i < a.data.length; i++) {
        assert(Math.abs(Number(pa.data[i]) - Number(pb.data[i])) <= 1, `${name}: pixel ${i}`);
        if (a.data[i] !== b.data[i]) {
          differ++;
          // Only where the probability sits on the threshold.
          assert(Math.abs(Number(pa.data[i]) - 127.5) <= 1, `${name}: mask pixel ${i}`);
        }
      }
      assert(differ <= 2, `${name}: ${differ} mask pixels differ`);
    }

    // Bad input: exit 2 with a message, no stack trace.
    for (
      const [args, want] of [
        [[EXPORT_CLI, run.dir, "--format", "tflite"], "--format"],
        [[EXPORT_CLI, join(dir, "nowhere")], "nowhere"],
        [[PREDICT_CLI, "--engine", "ort", file, test, "--out", ortOut], "--text"],
        [
          [PREDICT_CLI, "--engine", "ort", join(run.dir, "config.yaml"), test, "--out", ortOut],
          "not an ONNX model",
        ],
      ] as [string[], string][]
    ) {
      const c = await denoRun(args);
      assert(c.code === 2, c.text);
      assert(c.text.includes(want), c.text);
      assertNoStackTrace(c.text);
    }
  });
});
