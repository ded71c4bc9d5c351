/**
 * UNet++ (lib/models/unetpp.ts) against baselines-reference.md 3: the 350 state_dict entries of
 * Appendix C in order (tests/fixtures/unetpp_state_dict.txt), 26,078,609 parameters, 14.075 G
 * conv MACs per 224x224 image split as encoder / decoder / head; the option checks; a narrowed
 * variant's forward (evaluation and training mode) and every parameter gradient on both backends
 * against the float64 reference; and a few training steps that lower the loss.
 */
import { noGpu, randn, runOn } from "./harness.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { gradients, Graph, initValues, mul, sum, type Tensor } from "../lib/graph/mod.ts";
import { countModel } from "../lib/models/count.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import { buildModel } from "../lib/models/registry.ts";
import { checkOptions } from "../lib/models/options.ts";
import { UNETPP_OPTIONS, type UNetPPOptions } from "../lib/models/unetpp.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { inspectText, toJson } from "../lib/cli/inspect.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("unetpp state_dict: the 350 entries of Appendix C, in order, 26,078,609 parameters", () => {
  const fixture = new URL("./fixtures/unetpp_state_dict.txt", import.meta.url);
  const want = Deno.readTextFileSync(fixture).trim().split("\n");
  const sd = stateDict(buildModel("unetpp"));
  assertEquals(sd.map((e) => `${e.name} [${e.shape.join(",")}]`), want);
  const size = (prefix: string, trainable = true) =>
    sd.filter((e) => e.name.startsWith(prefix) && e.trainable === trainable)
      .reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);
  assertEquals(size(""), 26_078_609);
  // ResNet-34 without fc (3.5); the decoder and head are the rest.
  assertEquals(size("encoder."), 21_284_672);
  assertEquals(size("segmentation_head."), 145);
  const counters = sd.filter((e) => e.name.endsWith("num_batches_tracked"));
  assertEquals(counters.length, 58);
  assert(counters.every((e) => e.dtype === "int64" && !e.trainable), "counters are int64 buffers");
});

Deno.test("unetpp at 224: every parameter used, 14.075 G conv MACs per image (3.663 + 10.404 + 0.007)", () => {
  const c = countModel(buildModel("unetpp"), 1, 224);
  console.log(`unetpp params ${c.paramsRegistered}, MACs per image ${c.macs}`);
  assertEquals(c.paramsRegistered, 26_078_609);
  assertEquals(c.paramsUsed, 26_078_609);
  // Section 4's convention is conv + linear + matmul MACs: the engine's exact count (there are
  // no transposed convs or matmuls here).
  const g = (n: number) => (n / 1e9).toFixed(3);
  assertEquals(g(c.macs), "14.075");
  const by = Object.fromEntries(c.modules.map((m) => [m.module, g(m.macs)]));
  assertEquals(by, { encoder: "3.663", decoder: "10.404", segmentation_head: "0.007" });
  const head = c.modules.find((m) => m.module === "segmentation_head")!;
  assertEquals(head.shape, [1, 1, 224, 224]);
});

Deno.test("inspect --json of experiments/unetpp-monuseg.yaml: the reference's figures", async () => {
  const file = new URL("../experiments/unetpp-monuseg.yaml", import.meta.url).pathname;
  const j = toJson(inspectText(file, await Deno.readTextFile(file)));
  assertEquals([j.params_registered, j.params_used], [26_078_609, 26_078_609]);
  assertEquals((j.macs / 1e9).toFixed(3), "14.075");
  // The thop-style figure adds 4 MACs per batch-norm input (lvit-reference.md 1.8).
  assert(j.macs_reference > j.macs, "thop-style MACs count the batch norms too");
  assert(j.peak_bytes_train > j.peak_bytes_eval && j.peak_bytes_eval > 0, "peak memory planned");
});

Deno.test("unetpp options: image_size must be a multiple of 32, list lengths are checked", () => {
  const o = UNETPP_OPTIONS.defaults;
  checkOptions("unetpp", UNETPP_OPTIONS, o);
  const bad = (over: Partial<UNetPPOptions>, phrase: string) => {
    let msg = "";
    try {
      checkOptions("unetpp", UNETPP_OPTIONS, { ...o, ...over });
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(msg.includes(phrase), `expected '${phrase}' in '${msg}'`);
  };
  bad({ imageSize: 240 }, "multiple of 32");
  bad({ encoderBlocks: [3, 4, 6] }, "4 positive integers");
  bad({ decoderChannels: [256, 128, 64, 32] }, "5 positive integers");
  const build = (over: Partial<UNetPPOptions>, side: number) => {
    const g = new Graph();
    try {
      buildModel("unetpp", over)({ g, training: false }, g.input("x", [1, 3, side, side]));
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  // Built from code, the declaration is checked too; the input's own sides as well.
  const e = build({ encoderBlocks: [2, 2] }, 64);
  assert(e.startsWith("unetpp:") && e.includes("encoder_blocks"), e);
  assert(build({}, 48).includes("multiples of 32"), "a 48x48 input is refused");
});

// A narrowed UNet++ with every kind of node of the full one: the stem, the padded max pool,
// BasicBlocks with and without downsampling, all eleven decoder nodes, the head.
const TINY: Partial<UNetPPOptions> = {
  encoderWidth: 4,
  encoderBlocks: [1, 1, 1, 1],
  decoderChannels: [16, 8, 8, 4, 4],
  imageSize: 64,
};
const S = 64, B = 2;

function tinyCase(training: boolean) {
  const g = new Graph();
  const x = g.input("x", [B, 3, S, S]);
  const p = buildModel("unetpp", TINY)({ g, training }, x);
  const leaves = new Map<string, Float64Array>();
  g.leaves().forEach((t, i) => {
    if (t.init) leaves.set(t.name!, Float64Array.from(initValues(t.init, t.shape, 5, i)));
  });
  // Non-trivial BN statistics and shifts, so that the evaluation fold is exercised.
  for (const [k, v] of leaves) {
    if (/running_mean|bn\d?\.bias|\.1\.bias/.test(k)) {
      v.forEach((_, i) => (v[i] += 0.1 * Math.sin(i + k.length)));
    }
    if (/running_var/.test(k)) v.forEach((_, i) => (v[i] += 0.2 * Math.cos(i) ** 2));
  }
  leaves.set("x", Float64Array.from(randn(B * 3 * S * S, 41), (v) => 0.5 + 0.25 * v));
  // Inputs rounded to f32 as the backends see them, so that only arithmetic differs.
  for (const [k, v] of leaves) leaves.set(k, Float64Array.from(Float32Array.from(v)));
  return { g, p, leaves };
}

/** Largest |got - want| relative to want's largest magnitude, per output. */
function worst(got: Record<string, Float32Array>, want: Record<string, Float64Array>) {
  let abs = 0, rel = 0, where = "";
  for (const k of Object.keys(want)) {
    let d = 0, m = 0;
    want[k].forEach((w, i) => {
      d = Math.max(d, Math.abs(got[k][i] - w));
      m = Math.max(m, Math.abs(w));
    });
    if (!(d <= abs)) abs = d;
    const r = m > 0 ? d / m : d;
    if (!(r <= rel)) [rel, where] = [r, k];
  }
  return { abs, rel, where };
}

for (const target of ["cpu", "webgpu"] as const) {
  Deno.test({
    name: `narrowed unetpp (64x64, batch 2) eval forward matches float64 [${target}]`,
    ignore: target === "webgpu" && noGpu,
    sanitizeResources: false,
    fn: async () => {
      const { p, leaves } = tinyCase(false);
      const want = runRef({ p }, leaves);
      const w = worst(await runOn(target, { p }, leaves), want);
      console.log(`eval forward [${target}]: max abs diff ${w.abs.toExponential(2)}`);
      assert(w.abs <= 2e-5, `max abs diff ${w.abs}`);
    },
  });

  Deno.test({
    name: `narrowed unetpp training forward and parameter gradients match float64 [${target}]`,
    ignore: target === "webgpu" && noGpu,
    sanitizeResources: false,
    fn: async () => {
      const { g, p, leaves } = tinyCase(true);
      const r = g.input("r", p.shape);
      leaves.set("r", Float64Array.from(Float32Array.from(randn(p.size, 42))));
      const loss = sum(mul(p, r), [0, 1, 2, 3]);
      const params = g.params();
      const outs: Record<string, Tensor> = { p };
      gradients(loss, params).forEach((t, i) => (outs[`d:${params[i].name}`] = t));
      assertEquals(Object.keys(outs).length, 1 + params.length);
      const want = runRef(outs, leaves);
      const got = await runOn(target, outs, leaves);
      const f = worst({ p: got.p }, { p: want.p });
      const grads = Object.fromEntries(Object.entries(want).filter(([k]) => k !== "p"));
      const d = worst(got, grads);
      console.log(
        `training [${target}]: forward max abs diff ${f.abs.toExponential(2)}, gradients max ` +
          `abs diff ${d.abs.toExponential(2)}, worst relative ${
            d.rel.toExponential(2)
          } (${d.where})`,
      );
      assert(f.abs <= 2e-5, `forward max abs diff ${f.abs}`);
      // Each gradient within 1e-3 of its own largest magnitude: f32 sums over a whole backward
      // pass through 26 batch norms with batch statistics of as few as 8 values.
      assert(d.rel <= 1e-3, `gradient ${d.where}: relative diff ${d.rel}`);
    },
  });
}

Deno.test({
  name: "narrowed unetpp: eight Adam steps on one batch lower the loss [cpu]",
  sanitizeResources: false,
  fn: async () => {
    const s = await Session.create(await selectBackend("cpu", true), buildModel("unetpp", TINY), {
      batch: B,
      channels: 3,
      height: S,
      width: S,
      seed: 3,
    });
    try {
      const d = blobSet(3, 0, B, S);
      const losses: number[] = [];
      for (let i = 0; i < 8; i++) {
        s.step(d.images, d.masks, 3e-3);
        losses.push(await s.takeLossSum());
      }
      console.log(`losses ${losses.map((l) => l.toFixed(4)).join(" ")}`);
      assert(losses.every(Number.isFinite), "finite losses");
      assert(losses[7] < 0.9 * losses[0], `loss ${losses[0]} -> ${losses[7]}`);
    } finally {
      s.destroy();
    }
  },
});
