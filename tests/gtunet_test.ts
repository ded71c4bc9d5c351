/**
 * GT U-Net (lib/models/gtunet.ts) against baselines-reference.md 2: the official state_dict
 * (Appendix B, tests/fixtures/gtunet_state_dict.txt: 309 names and shapes in order),
 * 26,216,289 parameters, 55.745 GMACs per 256x256 image counted as the reference counts them,
 * the multiple-of-64 rule, and a narrowed model (base 16, 64x64, batch 2) in training mode,
 * forward and backward to every parameter, on both backends against the float64 reference.
 */
import { assertClose, noGpu, randn, runOn } from "./harness.ts";
import { assert, assertEquals } from "./assert.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { gradients, Graph, initValues, mul, sum, type Tensor } from "../lib/graph/mod.ts";
import { countGraph, exactMacs } from "../lib/models/count.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import { buildModel, MODELS } from "../lib/models/registry.ts";
import { checkOptions } from "../lib/models/options.ts";

const FIXTURE = new URL("./fixtures/gtunet_state_dict.txt", import.meta.url);

Deno.test("gtunet: state_dict equals the official GT_U_Net(3, 1) one (Appendix B) in order", async () => {
  const want = (await Deno.readTextFile(FIXTURE)).trim().split("\n");
  const got = stateDict(buildModel("gtunet"), { size: 256 }).map((e) =>
    `${e.name} [${e.shape.join(",")}]`
  );
  assertEquals(got.length, 309);
  assertEquals(got, want);
});

Deno.test("gtunet: 26,216,289 parameters, all used; 55.745 GMACs at 256 (conv 55.108 + einsum 0.637)", () => {
  const g = new Graph();
  const p = buildModel("gtunet")({ g, training: false }, g.input("x", [1, 3, 256, 256]));
  const c = countGraph(g, p);
  assertEquals(c.paramsRegistered, 26_216_289);
  assertEquals(c.paramsUsed, 26_216_289);
  // The reference counts conv hooks plus every einsum/matmul (section 4); so does `macs`. Its
  // relative logits count q against all 7 offsets, as ours do.
  const byOp = { conv: 0, matmul: 0 };
  for (const t of g.nodes) {
    if (t.kind !== "node") continue;
    if (t.op === "conv2d") byOp.conv += exactMacs(t);
    else if (t.op === "matmul") byOp.matmul += exactMacs(t);
  }
  assertEquals(byOp.conv + byOp.matmul, c.macs);
  const g3 = (n: number) => Math.round(n / 1e6) / 1e3;
  assertEquals([g3(c.macs), g3(byOp.conv), g3(byOp.matmul)], [55.745, 55.108, 0.637]);
  assertEquals(c.macs, 55_744_790_528);
  assertEquals(p.shape, [1, 1, 256, 256]);
});

Deno.test("gtunet: image sides must be multiples of 64 (the official model fails at 224)", () => {
  const e = MODELS.gtunet;
  assertEquals(e.defaults.imageSize, 256);
  let msg = "";
  try {
    checkOptions("gtunet", e.options, { ...e.defaults, imageSize: 224 });
  } catch (err) {
    msg = (err as Error).message;
  }
  assert(/image_size must be a multiple of 64.*got 224.*use 256/.test(msg), msg);
  checkOptions("gtunet", e.options, { ...e.defaults, imageSize: 320 });
  const g = new Graph();
  let built = "";
  try {
    buildModel("gtunet")({ g, training: false }, g.input("x", [1, 3, 224, 224]));
  } catch (err) {
    built = (err as Error).message;
  }
  assert(/multiples of 64/.test(built), built);
});

const S = 64, B = 2;

/** The narrowed model in training mode, its loss sum(p * r) and the gradient of every param. */
function narrowed() {
  const g = new Graph();
  const x = g.input("x", [B, 3, S, S]);
  const p = buildModel("gtunet", { baseChannels: 16, imageSize: S })({ g, training: true }, x);
  const r = g.input("r", p.shape);
  const loss = sum(mul(p, r), [0, 1, 2, 3]);
  const params = g.params();
  const outs: Record<string, Tensor> = { p, loss };
  gradients(loss, params).forEach((d, i) => (outs[`d:${params[i].name}`] = d));
  const leaves = new Map<string, Float64Array>();
  g.leaves().forEach((t, i) => {
    if (t.init) leaves.set(t.name!, Float64Array.from(initValues(t.init, t.shape, 7, i)));
  });
  for (const [k, v] of leaves) {
    // The zero-initialised conv3 norms would cut the attention path off the loss (its true
    // gradients all 0): give every BN weight and bias a spread so every path carries signal.
    if (/norm\.(weight|bias)$|up\.2\.(weight|bias)$/.test(k)) {
      v.forEach((_, i) => (v[i] += 0.3 * Math.sin(1 + i + k.length)));
    }
  }
  leaves.set("x", Float64Array.from(randn(B * 3 * S * S, 41), (v) => 0.5 + 0.25 * v));
  leaves.set("r", randn(p.size, 42));
  // Both sides start from the same f32-representable values.
  for (const [k, v] of leaves) leaves.set(k, Float64Array.from(Float32Array.from(v)));
  return { outs, leaves, params: params.length };
}

// Computed once for both backends: the float64 reference of the whole step.
let reference: { outs: Record<string, Tensor>; want: Record<string, Float64Array> } | undefined;

for (const target of ["cpu", "webgpu"] as const) {
  Deno.test({
    name:
      `gtunet (base 16, 64x64, batch 2) training forward + backward matches float64 [${target}]`,
    ignore: target === "webgpu" && noGpu,
    sanitizeResources: false,
    fn: async () => {
      const { outs, leaves, params } = narrowed();
      // Per block 19 tensors (3 convs, 4 norms, q/k/v, 2 relative tables), 4 per Up, Conv_1x1.
      assertEquals(params, 9 * 19 + 4 * 4 + 2);
      reference ??= { outs, want: runRef(outs, leaves) };
      const got = await runOn(target, outs, leaves);
      const want = reference.want;
      // The probabilities, O(0.5) after ~40 layers in f32 with training-mode batch norms.
      assertClose(`gtunet p [${target}]`, got.p, want.p, 2e-5, 1e-4);
      assertClose(`gtunet loss [${target}]`, got.loss, want.loss, 1e-3, 1e-5);
      // Gradients: the largest error of each tensor relative to its largest value. The conv
      // biases before batch norms have an exactly-zero true gradient (the norm removes them):
      // their f32 noise is measured against the largest gradient of the whole model instead.
      const grads = Object.keys(outs).filter((k) => k.startsWith("d:"));
      const peak = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, v), 0);
      const absMax = (a: ArrayLike<number>) => peak(Array.from(a, Math.abs));
      const scale = Math.max(...grads.map((k) => absMax(reference!.want[k])));
      let worst = { k: "", rel: 0, abs: 0 };
      for (const k of grads) {
        const w = reference!.want[k];
        const diff = absMax(Array.from(got[k], (v, i) => v - w[i]));
        const rel = diff / Math.max(absMax(w), 1e-3 * scale);
        if (rel > worst.rel) worst = { k, rel, abs: diff };
      }
      const pDiff = absMax(Array.from(got.p, (v, i) => v - want.p[i]));
      console.log(
        `gtunet [${target}]: max |p - p64| ${pDiff.toExponential(2)}; worst gradient ` +
          `${worst.k} rel ${worst.rel.toExponential(2)} (abs ${worst.abs.toExponential(2)}, ` +
          `model-wide max |grad| ${scale.toExponential(2)})`,
      );
      assert(worst.rel < 2e-3, `gradient ${worst.k} off by ${worst.rel} of its scale`);
    },
  });
}
