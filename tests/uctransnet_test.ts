/**
 * UCTransNet (lib/models/uctransnet.ts) against baselines-reference.md section 1: the official
 * state_dict (Appendix A, names, shapes and order, from tests/fixtures/uctransnet_state_dict.txt),
 * 66,430,657 parameters all used, the section 1.7 MACs at 224 split into conv / linear /
 * attention matmuls, and a narrowed variant's forward and every parameter gradient on both
 * backends against the float64 reference.
 */
import { noGpu, randn, runOn } from "./harness.ts";
import { assert, assertEquals } from "./assert.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { getOp, gradients, Graph, initValues, mul, sum, type Tensor } from "../lib/graph/mod.ts";
import { schedule } from "../lib/graph/plan.ts";
import { countGraph, referenceMacs } from "../lib/models/count.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import { buildModel, MODELS } from "../lib/models/registry.ts";
import { checkUCTransNetOptions, UCTRANSNET_DEFAULTS } from "../lib/models/uctransnet.ts";

Deno.test("uctransnet: state_dict equals the official 433 entries in order, 66,430,657 parameters", async () => {
  const want = (await Deno.readTextFile(
    new URL("./fixtures/uctransnet_state_dict.txt", import.meta.url),
  )).trim().split("\n");
  const sd = stateDict(buildModel("uctransnet"));
  assertEquals(sd.map((e) => `${e.name} [${e.shape.join(",")}]`), want);
  assertEquals(sd.length, 433);
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const params = sd.filter((e) => e.trainable).reduce((n, e) => n + size(e.shape), 0);
  assertEquals(params, 66_430_657);
  // Buffers: 9,749 elements, the running statistics of the 21 batch norms and their counters.
  const buffers = sd.filter((e) => !e.trainable);
  assertEquals(buffers.reduce((n, e) => n + size(e.shape), 0), 9_749);
  assertEquals(buffers.filter((e) => e.dtype === "int64").length, 21);
  const mtc = sd.filter((e) => e.trainable && e.name.startsWith("mtc."));
  assertEquals(mtc.reduce((n, e) => n + size(e.shape), 0), 52_374_144);
});

/** The 224x224 evaluation graph's live nodes and the counts of countGraph. */
function graph224() {
  const g = new Graph();
  const out = buildModel("uctransnet")({ g, training: false }, g.input("x", [1, 3, 224, 224]));
  return { count: countGraph(g, out), live: schedule([out], []) };
}

Deno.test("uctransnet: every parameter is used; MACs per 224 image as section 1.7 (38.578 G)", () => {
  const { count, live } = graph224();
  assertEquals(count.paramsRegistered, 66_430_657);
  assertEquals(count.paramsUsed, 66_430_657);
  // Section 4's convention: conv + linear + attention matmuls, norms and the rest 0.
  const G = (n: number) => Math.round(n / 1e6) / 1e3;
  assertEquals(G(count.macs), 38.578);
  let conv = 0, lin = 0, attn = 0;
  for (const t of live) {
    if (t.kind !== "node") continue;
    const m = getOp(t.op).macs?.(t.inputs.map((i) => i.shape), t.attrs, t.shape) ?? 0;
    if (t.op === "conv2d") conv += m;
    // A matmul against a parameter is a Linear (count.ts's thop rule); the rest are Q^T K, P V^T.
    else if (t.op === "matmul") referenceMacs(t) > 0 ? (lin += m) : (attn += m);
    else assert(m === 0, `${t.op} counts MACs`);
  }
  assertEquals([G(conv), G(lin), G(attn)], [23.468, 9.329, 5.78]);
  const part = (mods: string[]) =>
    G(count.modules.filter((r) => mods.includes(r.module)).reduce((n, r) => n + r.macs, 0));
  assertEquals(part(["inc", "down1", "down2", "down3", "down4"]), 9.335);
  assertEquals(part(["mtc"]), 16.753);
  // 1.7 prints the decoder as 12.489 G conv + 0.0007 G linear = "12.490": a sum of rounded parts.
  const decoder = part(["up4", "up3", "up2", "up1", "outc"]);
  assert(Math.abs(decoder - 12.49) <= 0.001, `decoder ${decoder} G`);
  // thop's conv + linear convention (1.7: 32.80 G per image).
  assertEquals(Math.round((conv + lin) / 1e7) / 1e2, 32.8);
});

Deno.test("uctransnet: image_size is checked (multiple of 16, matching the input)", () => {
  let msg = "";
  try {
    checkUCTransNetOptions({ ...UCTRANSNET_DEFAULTS, imageSize: 40 });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes("image_size must be a positive multiple of 16"), msg);
  const g = new Graph();
  let err = "";
  try {
    buildModel("uctransnet")({ g, training: false }, g.input("x", [1, 3, 64, 64]));
  } catch (e) {
    err = (e as Error).message;
  }
  assert(err.includes("built for 224x224"), err);
  assertEquals(MODELS.uctransnet.usesText, false);
});

// A narrowed UCTransNet: base 4 (widths 4..32, KV 60), 32x32 (a 2x2 token grid), 4 heads,
// 2 layers, batch 2; training mode (batch statistics) without dropout, so the float64
// reference computes the same function.
const B = 2, S = 32;

function narrowStep() {
  const g = new Graph();
  const x = g.input("x", [B, 3, S, S]);
  const model = buildModel("uctransnet", {
    baseChannels: 4,
    imageSize: S,
    depth: 2,
    dropoutEnabled: false,
  });
  const p = model({ g, training: true }, x);
  const r = g.input("r", p.shape);
  const loss = sum(mul(p, r), [0, 1, 2, 3]);
  const params = g.params();
  const outs: Record<string, Tensor> = { p, loss };
  gradients(loss, params).forEach((t, i) => (outs[`d:${params[i].name}`] = t));
  const leaves = new Map<string, Float64Array>();
  g.leaves().forEach((t, i) => {
    if (t.init) leaves.set(t.name!, Float64Array.from(initValues(t.init, t.shape, 7, i)));
  });
  // The zero position embeddings and N(0, 1e-6) MLP biases get signal of their own.
  for (const [k, v] of leaves) {
    if (/position_embeddings|fc\d\.bias/.test(k)) {
      v.forEach((_, i) => (v[i] = 0.1 * Math.sin(i + 1)));
    }
  }
  leaves.set("x", Float64Array.from(randn(B * 3 * S * S, 11), (v) => 0.5 + 0.25 * v));
  leaves.set("r", randn(p.size, 12));
  return { outs, leaves, params: params.length };
}

/**
 * Worst error of `got` against `want`. Each output counts relative to its own largest value (a
 * gradient's scale is its tensor's, not its element's), except gradients that are exactly zero
 * in float64 (below 1e-9 of the largest gradient: conv biases before batch norm, the final
 * LayerNorm biases whose per-channel shift Reconstruct's batch norm removes), whose f32 values
 * are rounding noise and count relative to the largest gradient of all.
 */
function worst(got: Record<string, Float32Array>, want: Record<string, Float64Array>) {
  const amax = (a: ArrayLike<number>) =>
    Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const grads = Object.keys(want).filter((k) => k.startsWith("d:"));
  const top = Math.max(...grads.map((k) => amax(want[k])));
  const res = { rel: 0, at: "", zeroRel: 0, zeroAt: "", abs: 0, top, zeros: 0 };
  for (const k of Object.keys(want)) {
    const own = amax(want[k]);
    const zero = k.startsWith("d:") && own <= 1e-9 * top;
    if (zero) res.zeros++;
    for (let i = 0; i < want[k].length; i++) {
      const d = Math.abs(got[k][i] - want[k][i]);
      res.abs = Math.max(res.abs, d);
      if (zero && d / top > res.zeroRel) [res.zeroRel, res.zeroAt] = [d / top, k];
      if (!zero && d / own > res.rel) [res.rel, res.at] = [d / own, k];
    }
  }
  return { ...res, p: amax(want.p.map((v, i) => v - got.p[i])) };
}

for (const target of ["cpu", "webgpu"] as const) {
  Deno.test({
    name:
      `uctransnet (base 4, 32x32, batch 2): forward and all gradients match float64 [${target}]`,
    ignore: target === "webgpu" && noGpu,
    sanitizeResources: false,
    fn: async () => {
      const { outs, leaves, params } = narrowStep();
      const t0 = performance.now();
      const want = runRef(outs, leaves);
      const t1 = performance.now();
      const got = await runOn(target, outs, leaves);
      const t2 = performance.now();
      const w = worst(got, want);
      console.log(
        `${target}: output max abs diff ${w.p.toExponential(2)}; ${params} parameter ` +
          `gradients (largest ${w.top.toExponential(2)}): max abs diff ` +
          `${w.abs.toExponential(2)}, max rel ${w.rel.toExponential(2)} (${w.at}); ` +
          `${w.zeros} exactly-zero gradients within ${w.zeroRel.toExponential(2)} of the ` +
          `largest (${w.zeroAt}); ref ${(t1 - t0).toFixed(0)} ms, ` +
          `${target} ${(t2 - t1).toFixed(0)} ms`,
      );
      assertEquals(Object.keys(got).length, params + 2);
      assert(w.rel < 2e-4, `${target}: ${w.at} off by ${w.rel} of its scale`);
      assert(w.zeroRel < 1e-5, `${target}: ${w.zeroAt} off by ${w.zeroRel} of the largest`);
    },
  });
}
