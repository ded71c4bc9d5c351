/**
 * Reading many leaves back at once (`Runtime.readMany`, used by checkpoints): the values and
 * their order equal leaf-by-leaf reads, on both backends, including staging chunks smaller than
 * a leaf and leaves of one value; `viewMany` gives the same values (without copies on the CPU).
 */
import { gpu, noGpu } from "./harness.ts";
import { WebGPURuntime } from "../lib/backends/webgpu/executor.ts";
import { CpuRuntime } from "../lib/backends/cpu/executor.ts";
import { Graph, mul } from "../lib/graph/mod.ts";
import { compile } from "../lib/backends/compile.ts";
import type { Target } from "../lib/backends/compile.ts";
import { assertEquals } from "./assert.ts";

// Awkward sizes: one value, odd lengths, and one leaf larger than the small staging chunk below.
const SHAPES: Record<string, number[]> = { a: [1], b: [3, 5], c: [257], d: [1, 1], e: [7, 9, 3] };

async function check(target: Target) {
  const g = new Graph();
  const ts = Object.entries(SHAPES).map(([n, s]) => g.param(n, s, { kind: "const", value: 0 }));
  // Programs load the leaves they use; one output per leaf keeps them all.
  const outputs = Object.fromEntries(ts.map((t, k) => [`y${k}`, mul(t, 2)]));
  const prog = compile(outputs, [], gpu?.limits, target);
  const rt = target === "webgpu" ? new WebGPURuntime(gpu!) : new CpuRuntime();
  const exe = await rt.load(prog);
  const names = Object.keys(SHAPES);
  names.forEach((n, k) => {
    const len = SHAPES[n].reduce((p, q) => p * q, 1);
    rt.write(n, Float32Array.from({ length: len }, (_, i) => k * 1000 + i + 0.25));
  });
  exe.run();
  const one = await Promise.all(names.map((n) => rt.read(n)));
  // Reversed order, to show values come back in the order asked, not the order of creation.
  const rev = [...names].reverse();
  const many = await rt.readMany(rev);
  assertEquals(many.map((v) => Array.from(v)), [...one].reverse().map((v) => Array.from(v)));
  if (rt instanceof WebGPURuntime) {
    // 64-byte staging chunks: 'c' (1,028 bytes) and 'e' (756) each need their own buffer.
    const small = await rt.readMany(names, 64);
    assertEquals(small.map((v) => Array.from(v)), one.map((v) => Array.from(v)));
  }
  assertEquals(await rt.readMany([]), []);
  // viewMany: the same values in the same order; on the CPU the leaves themselves, so a later
  // run shows through a view (the runner writes a checkpoint before training goes on).
  const views = await rt.viewMany(rev);
  assertEquals(views.map((v) => Array.from(v)), many.map((v) => Array.from(v)));
  if (rt instanceof CpuRuntime) {
    rt.write("a", new Float32Array([-3]));
    assertEquals(views[names.length - 1][0], -3);
    assertEquals(many[names.length - 1][0], 0.25);
  }
  exe.destroy();
  rt.destroy();
}

Deno.test("readMany equals leaf-by-leaf reads (cpu)", () => check("cpu"));
Deno.test({
  name: "readMany equals leaf-by-leaf reads (webgpu, one submit, chunked staging)",
  ignore: noGpu,
  fn: () => check("webgpu"),
});
