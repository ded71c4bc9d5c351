/**
 * LViT on the devices: a small LViT-T (base 8, 64x64, all blocks of the reference) evaluated on
 * both backends against the float64 reference, and an official-style checkpoint (DataParallel
 * prefixes, thop counters, int64 num_batches_tracked) loading into the reference-sized model.
 */
import { noGpu, randn } from "./harness.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { Graph, initValues } from "../lib/graph/mod.ts";
import { compile } from "../lib/backends/compile.ts";
import { buildModel } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import { matchStateDict } from "../lib/io/checkpoint.ts";
import { assertClose } from "./harness.ts";

const S = 64;

function tiny() {
  const g = new Graph();
  const x = g.input("x", [1, 3, S, S]);
  const p = buildModel("lvit-t", { baseChannels: 8, imageSize: S })({ g, training: false }, x);
  const leaves = new Map<string, Float64Array>();
  g.leaves().forEach((t, i) => {
    if (t.init) leaves.set(t.name!, Float64Array.from(initValues(t.init, t.shape, 3, i)));
  });
  // Perturb the zero-initialised position embeddings and unit BN statistics so every path
  // carries signal.
  for (const [k, v] of leaves) {
    if (/position_embeddings|running_mean|\.bias$/.test(k)) {
      v.forEach((_, i) => (v[i] += 0.05 * Math.sin(i + k.length)));
    }
  }
  leaves.set("x", Float64Array.from(randn(3 * S * S, 31), (v) => 0.5 + 0.2 * v));
  leaves.set(TEXT_INPUT, randn(10 * 768, 32));
  return { g, p, leaves };
}

for (const target of ["cpu", "webgpu"] as const) {
  Deno.test({
    name: `tiny LViT-T (base 8, 64x64) eval forward matches float64 [${target}]`,
    ignore: target === "webgpu" && noGpu,
    sanitizeResources: false,
    fn: async () => {
      const { g, p, leaves } = tiny();
      const want = runRef({ p }, leaves).p;
      const be = await selectBackend(target, true);
      const rt = be.runtime();
      const exe = await rt.load(compile({ p }, [], be.limits, be.name));
      for (const t of g.leaves()) {
        if (rt.hasLeaf(t.name!)) rt.write(t.name!, Float32Array.from(leaves.get(t.name!)!));
      }
      exe.run();
      const got = await exe.read("p");
      exe.destroy();
      rt.destroy();
      // ~60 layers in f32 (ViT, PLAM, reconstruct, decoder) ending in a sigmoid whose output
      // is O(0.5): a few 1e-6 of accumulated rounding.
      assertClose(`lvit ${target}`, got, want, 2e-5, 1e-5);
    },
  });
}

Deno.test("an official-style LViT-T checkpoint (module. prefixes, thop, int64) loads by name", () => {
  const g = new Graph();
  const x = g.input("x", [1, 3, 224, 224]);
  buildModel("lvit-t")({ g, training: true }, x);
  const expected = new Map<string, readonly number[]>();
  for (const t of g.leaves()) if (t.kind !== "input") expected.set(t.name!, t.shape);
  // Write the file the way torch's DataParallel + thop would leave it.
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let off = 0;
  const put = (name: string, dtype: string, shape: number[], bytes: Uint8Array) => {
    Object.defineProperty(header, name, {
      value: { dtype, shape, data_offsets: [off, off + bytes.length] },
      enumerable: true,
    });
    chunks.push(bytes);
    off += bytes.length;
  };
  for (const [name, shape] of expected) {
    if (name.endsWith("num_batches_tracked")) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, 7n, true);
      put(`module.${name}`, "I64", [], b);
    } else {
      const n = shape.reduce((a, b) => a * b, 1);
      put(
        `module.${name}`,
        "F32",
        [...shape],
        new Uint8Array(new Float32Array(n).fill(0.25).buffer),
      );
    }
  }
  put("module.total_ops", "F64", [1], new Uint8Array(8));
  put("module.total_params", "F64", [1], new Uint8Array(8));
  const hb = new TextEncoder().encode(JSON.stringify(header));
  const file = new Uint8Array(8 + hb.length + off);
  new DataView(file.buffer).setBigUint64(0, BigInt(hb.length), true);
  file.set(hb, 8);
  let at = 8 + hb.length;
  for (const c of chunks) {
    file.set(c, at);
    at += c.length;
  }
  const r = matchStateDict("lvit_official.safetensors", file, expected);
  if (r.values.size !== expected.size) {
    throw new Error(`${r.values.size} of ${expected.size} loaded`);
  }
  if (expected.size !== 541) throw new Error(`the model has ${expected.size} state_dict entries`);
  if (r.ignored.length !== 2) throw new Error("thop counters not recognised");
  const nbt = [...r.values].find(([k]) => k.endsWith("num_batches_tracked"))!;
  if (nbt[1][0] !== 7) throw new Error("int64 num_batches_tracked misread");
});
