/**
 * The LViT-specific ops of lib/graph/ops/misc.ts (gelu, gelu_grad, dropout, max_axis,
 * max_axis_grad) and the layers built for LViT on existing ops (conv1d, batchNorm1d), plus the
 * LViT configurations of existing ops (strided patch-embedding conv, nearest upsampling by
 * 2..16), whose samples are in tests/op_info/misc.ts:
 * - on WebGPU and on the CPU backend against the float64 reference (`checkOp`: y and the
 *   gradients of sum(y * r));
 * - in float64, autodiff against central finite differences (`fdCheck`);
 * - the float64 erf against known values, and the f32-coefficient erfc approximation against it;
 * - dropout: CPU and WebGPU outputs identical bit for bit, the mask equal to the TS Philox
 *   draws, the step read at run time, keep rate ~ 1 - p;
 * - conv1d and batchNorm1d against loops written from the PyTorch definitions;
 * - last, a coverage test over the ops this file owns (tests/op_coverage.ts).
 *
 * Tolerances are given per group with the reason. Notation: f32 unit roundoff u = 6e-8.
 */
import {
  dropout,
  gelu,
  gradients,
  Graph,
  maxAxis,
  mul,
  sum,
  type Tensor,
} from "../lib/graph/mod.ts";
import { compile } from "../lib/backends/compile.ts";
import { erfcRef, erfRef } from "../lib/graph/ops/misc.ts";
import { geluCpu, geluGradCpu, geluGradScalar, geluPhi2, geluScalar } from "../kernels/cpu/misc.ts";
import { expF64 } from "../kernels/cpu/exp.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { WebGPURuntime } from "../lib/backends/webgpu/executor.ts";
import { CpuRuntime } from "../lib/backends/cpu/executor.ts";
import { batchNorm1d, conv1d, conv1dLayer } from "../lib/nn/layers.ts";
import { fillUniform, Stream, uniformAt } from "../lib/rng/philox.ts";
import { OpSuite } from "./op_suite.ts";
import { assertClose, gpu, noGpu, randn, runOn } from "./harness.ts";
import { assertEquals } from "./assert.ts";

import { MISC_TABLE } from "./op_info/misc.ts";

// Registration and coverage bookkeeping (tests/op_suite.ts).
const suite = new OpSuite("misc_ops_test.ts");
suite.table(MISC_TABLE);

// ---------------------------------------------------------------------------------------------
// erf: the float64 reference and the f32-coefficient approximation of the kernels.

Deno.test("erfRef / erfcRef: known values to 1e-15 (erfc tails relative 1e-13)", () => {
  // Values of erf/erfc to 16 digits (standard tables).
  const erfs: [number, number][] = [
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [2, 0.9953222650189527],
    [3, 0.9999779095030014],
  ];
  for (const [x, v] of erfs) {
    assertClose(`erf(${x})`, [erfRef(x)], [v], 1e-15, 0);
    assertClose(`erf(-${x})`, [erfRef(-x)], [-v], 1e-15, 0);
    assertClose(`erfc(-${x})`, [erfcRef(-x)], [1 + v], 1e-15, 0);
  }
  const tails: [number, number][] = [
    [3, 2.209049699858544e-5],
    [4, 1.541725790028002e-8],
    [5, 1.5374597944280349e-12],
    [10, 2.088487583762545e-45],
  ];
  for (const [x, v] of tails) assertClose(`erfc(${x})`, [erfcRef(x)], [v], 0, 1e-13);
  // The two formulas meet at 3 (series below, continued fraction above) without a jump.
  const h = 1e-9;
  const slope = (-2 / Math.sqrt(Math.PI)) * Math.exp(-9);
  assertClose("erfc continuity at 3", [erfcRef(3 - h) - erfcRef(3)], [-slope * h], 1e-15, 0);
  if (erfRef(0) !== 0 || erfcRef(0) !== 1) throw new Error("erf(0) / erfc(0)");
});

// The kernels' 1 + erf(x / sqrt 2) with f32 coefficients, evaluated in float64 (the CPU
// kernel's arithmetic): the fit's error is relative in erfc, so the result is within 1.2e-7 of
// erfc on the side where it is erfc itself (x < 0) and within 1.2e-7 erfc of 2 - erfc on the
// other, i.e. erf to 1.2e-7 absolute everywhere and GELU's negative tail to 1.2e-7 relative.
Deno.test("gelu's erfc approximation: relative error <= 1.2e-7 over [-12, 12]", () => {
  let worst = 0;
  for (let i = -120000; i <= 120000; i++) {
    const x = i / 10000;
    const e = erfcRef(Math.abs(x) * Math.SQRT1_2);
    const want = x >= 0 ? 2 - e : e;
    // Beyond the fit's relative error, 2 - e itself rounds in float64 (<= 2.2e-16).
    const err = Math.max(0, Math.abs(geluPhi2(x) - want) - 2.3e-16) / e;
    if (!(err <= worst)) worst = err;
  }
  if (!(worst <= 1.2e-7)) throw new Error(`erfc approximation off by ${worst} relative`);
});

// kernels/cpu/exp.ts, the exp of gelu, gelu_grad and softmax on the CPU: 1.2e-11 relative
// (2e5 times below f32's rounding) wherever the result is a normal double, Math.exp's special
// values, and no table index out of range anywhere (that would read undefined: NaN).
Deno.test("expF64: within 1.2e-11 of Math.exp over [-708, 709], special values as Math.exp", () => {
  let worst = 0;
  for (let i = -708000; i <= 709000; i++) {
    for (const x of [i / 1000, i / 1000 + 0.000123456789]) {
      const want = Math.exp(x);
      const err = Math.abs(expF64(x) - want) / want;
      if (!(err <= worst)) worst = err;
    }
  }
  if (!(worst <= 1.2e-11)) throw new Error(`expF64 off by ${worst} relative`);
  for (let x = -1; x <= 1; x += 1 / 1024) {
    const err = Math.abs(expF64(x) - Math.exp(x)) / Math.exp(x);
    if (!(err <= 1.2e-11)) throw new Error(`expF64(${x}) off by ${err}`);
  }
  assertEquals(expF64(0), 1);
  assertEquals(expF64(-0), 1);
  assertEquals(Number.isNaN(expF64(NaN)), true);
  assertEquals([expF64(Infinity), expF64(1e300), expF64(710)], [Infinity, Infinity, Infinity]);
  assertEquals([expF64(-Infinity), expF64(-1e300), expF64(-745), expF64(-746)], [0, 0, 0, 0]);
  // Subnormal results (f32 flushes them long before): small, non-negative, never NaN.
  for (let x = -745; x <= -700; x += 0.37) {
    const v = expF64(x);
    if (!(v >= 0 && v <= 2 * Math.exp(x) + 1e-323)) throw new Error(`expF64(${x}) = ${v}`);
  }
  // What the kernels store: f32 roundings of expF64 and Math.exp differ by at most 1 ulp.
  const f = new Float32Array(2);
  for (let i = -103000; i <= 88000; i += 7) {
    f[0] = expF64(i / 1000);
    f[1] = Math.exp(i / 1000);
    if (Math.abs(f[0] - f[1]) > Math.abs(f[1]) * 1.2e-7) {
      throw new Error(`f32(expF64(${i / 1000})) = ${f[0]} vs ${f[1]}`);
    }
  }
});

// kernels/cpu/gelu_wasm.ts runs the CPU kernels' formulas as WebAssembly SIMD; it must give
// geluScalar's and geluGradScalar's f32 bits for every input: random bit patterns (NaN, infinities,
// subnormals), both tails and the specials, over ranges that start and end off the loop's 16-element
// step and cross the 8192-element chunks, through the kernels' run and runPart.
Deno.test("gelu, gelu_grad on the CPU: the WebAssembly kernels equal the scalar formulas bit for bit", () => {
  const n = 3 * 8192 + 37;
  const x = new Float32Array(n), dy = new Float32Array(n);
  const xu = new Uint32Array(x.buffer);
  let st = 7; // an LCG: the test needs varied inputs, not good random numbers
  const next = () => (st = (Math.imul(st, 1664525) + 1013904223) >>> 0);
  const unit = () => next() / 2 ** 32;
  const specials = [0, -0, NaN, Infinity, -Infinity, 1e-45, -1e-45, 1.2e-38, 3.4e38, -3.4e38];
  for (let i = 0; i < n; i++) {
    const r = next(), kind = i % 4;
    if (i < specials.length) x[i] = specials[i];
    else if (kind === 0) xu[i] = r; // any bit pattern
    else x[i] = (unit() - 0.5) * (kind === 1 ? 12 : kind === 2 ? 40 : 400);
    dy[i] = (unit() - 0.5) * 4;
  }
  const bits = (a: Float32Array, i: number) =>
    Number.isNaN(a[i]) ? "NaN" : new Uint32Array(a.buffer)[i];
  const want = new Float32Array(n), wantGrad = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    want[i] = geluScalar(x[i]);
    wantGrad[i] = geluGradScalar(x[i], dy[i]);
  }
  for (const parts of [1, 3]) {
    const y = new Float32Array(n).fill(7), g = new Float32Array(n).fill(7);
    const k = geluCpu(n), kg = geluGradCpu(n);
    if (parts === 1) {
      k.run([x], y, []);
      kg.run([x, dy], g, []);
    } else {
      for (let p = 0; p < parts; p++) {
        k.runPart!([x], y, [], p, parts);
        kg.runPart!([x, dy], g, [], p, parts);
      }
    }
    for (let i = 0; i < n; i++) {
      if (bits(y, i) !== bits(want, i)) throw new Error(`gelu(${x[i]}) = ${y[i]}, want ${want[i]}`);
      if (bits(g, i) !== bits(wantGrad, i)) {
        throw new Error(`gelu_grad(${x[i]}, ${dy[i]}) = ${g[i]}, want ${wantGrad[i]}`);
      }
    }
  }
});

Deno.test("gelu: float64 reference against torch's formula at a few points", () => {
  // torch.nn.functional.gelu(x) = x * 0.5 * (1 + erf(x / sqrt 2)) with an exact erf.
  const g = new Graph();
  const x = g.input("x", [5]);
  const xs = Float64Array.of(-2, -0.5, 0, 0.7, 3);
  const y = runRef({ y: gelu(x) }, new Map([["x", xs]])).y;
  const want = Array.from(xs, (v) => v * 0.5 * (1 + erfRef(v / Math.SQRT2)));
  assertClose("gelu ref", y, want, 1e-15, 0);
});

/** x, dropout(x), and its gradient for r, as one graph with the step as an input. */
function dropoutGraph(n: number, p: number, seed: number) {
  const g = new Graph();
  const x = g.input("x", [n]);
  const step = g.input("step", [1]);
  const y = dropout(x, step, { p, seed });
  const r = g.input("r", [n]);
  const [dx] = gradients(sum(mul(y, r), [0]), [x]);
  return { y, dx };
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

Deno.test({
  name: "dropout: CPU and WebGPU outputs are identical bit for bit, and match the TS Philox",
  ignore: noGpu,
  fn: async () => {
    const configs = [
      { n: 100003, p: 0.3, seed: 0, step: 0 },
      { n: 4099, p: 0.1, seed: 7, step: 1 },
      { n: 517, p: 0.5, seed: 2 ** 32 + 5, step: 12345 },
      { n: 64, p: 0.9, seed: 123456789, step: 2 ** 24 - 1 },
    ];
    for (const cfg of configs) {
      const { y, dx } = dropoutGraph(cfg.n, cfg.p, cfg.seed);
      const leaves = new Map([
        ["x", randn(cfg.n, 31)],
        ["r", randn(cfg.n, 32)],
        ["step", Float64Array.of(cfg.step)],
      ]);
      const gpuRes = await runOn("webgpu", { y, dx }, leaves);
      const cpuRes = await runOn("cpu", { y, dx }, leaves);
      for (const k of ["y", "dx"]) {
        const a = bits(gpuRes[k]), b = bits(cpuRes[k]);
        for (let i = 0; i < cfg.n; i++) {
          if (a[i] !== b[i]) {
            throw new Error(
              `${JSON.stringify(cfg)} ${k}[${i}]: webgpu ${gpuRes[k][i]} != cpu ${cpuRes[k][i]}`,
            );
          }
        }
      }
      // The mask is the TS Philox's: element i is kept iff the uniform at (seed, stream, step,
      // block i / 4, word i % 4) is >= p; for word 0 that is `uniformAt`.
      const x = Float32Array.from(leaves.get("x")!);
      const scale = Math.fround(1 / (1 - cfg.p));
      for (let i = 0; i < cfg.n; i++) {
        // x is N(0,1), never exactly 0: a zero output means a dropped element.
        const kept = cpuRes.y[i] !== 0;
        if (i % 4 === 0 && kept !== uniformAt(cfg.seed, Stream.dropout, cfg.step, i / 4) >= cfg.p) {
          throw new Error(`${JSON.stringify(cfg)} element ${i}: mask differs from uniformAt`);
        }
        const want = kept ? Math.fround(x[i] * scale) : 0;
        if (cpuRes.y[i] !== want) throw new Error(`${JSON.stringify(cfg)} y[${i}] not x * scale`);
      }
    }
  },
});

for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `dropout: the step is read at run time, one program serves every step [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      const { y } = dropoutGraph(1000, 0.5, 11);
      const prog = compile({ y }, [], gpu?.limits, target);
      const rt = target === "webgpu" ? new WebGPURuntime(gpu!) : new CpuRuntime();
      const exe = await rt.load(prog);
      const x = Float32Array.from(randn(1000, 41));
      rt.write("x", x);
      const masks: string[] = [];
      for (const step of [0, 1, 2, 1]) {
        rt.write("step", Float32Array.of(step));
        exe.run();
        const got = await exe.read("y");
        const u = new Float64Array(1000);
        fillUniform(u, 11, Stream.dropout, step);
        const want = Array.from(x, (v, i) => Math.fround(v * (u[i] >= 0.5 ? 2 : 0)));
        assertClose(`dropout step ${step}`, got, want, 0, 0);
        masks.push(Array.from(got, (v) => (v !== 0 ? 1 : 0)).join(""));
      }
      if (masks[0] === masks[1] || masks[1] === masks[2]) throw new Error("steps share a mask");
      if (masks[1] !== masks[3]) throw new Error("the same step drew two different masks");
      exe.destroy();
      rt.destroy();
    },
  });
}

Deno.test("dropout: keep rate ~ 1 - p, seeds and steps decorrelated (reference)", () => {
  const n = 200000;
  const ones = new Float64Array(n).fill(1);
  for (const p of [0.1, 0.5, 0.9]) {
    const kept = (step: number, seed: number) => {
      const { y } = dropoutGraph(n, p, seed);
      const leaves = new Map([["x", ones], ["step", Float64Array.of(step)], ["r", ones]]);
      return Array.from(runRef({ y }, leaves).y, (v): number => (v !== 0 ? 1 : 0));
    };
    const a = kept(0, 5), b = kept(1, 5), c = kept(0, 6);
    const rate = a.reduce((s, v) => s + v, 0) / n;
    const sd = Math.sqrt(p * (1 - p) / n);
    if (Math.abs(rate - (1 - p)) > 5 * sd) throw new Error(`p ${p}: keep rate ${rate}`);
    // Two independent masks agree on a fraction p^2 + (1-p)^2 of the elements.
    const q = p * p + (1 - p) * (1 - p);
    for (const [what, m] of [["step", b], ["seed", c]] as const) {
      const agree = a.reduce((s, v, i) => s + +(v === m[i]), 0) / n;
      const sdq = Math.sqrt(q * (1 - q) / n);
      if (Math.abs(agree - q) > 5 * sdq) throw new Error(`p ${p}: ${what} change agrees ${agree}`);
    }
  }
});

Deno.test("dropout: builder with p = 0 adds no node; bad attributes are shape errors", () => {
  const g = new Graph();
  const x = g.input("x", [4]);
  const step = g.input("step", [1]);
  if (dropout(x, step, { p: 0, seed: 1 }) !== x) throw new Error("p = 0 should return x");
  const bad = [
    () => dropout(x, step, { p: 1.5, seed: 1 }),
    () => dropout(x, step, { p: 0.5, seed: -1 }),
    () => dropout(x, step, { p: 0.5, seed: 0.5 }),
    () => dropout(x, x, { p: 0.5, seed: 1 }),
  ];
  for (const f of bad) {
    let ok = false;
    try {
      f();
    } catch (e) {
      ok = (e as Error).message.includes("dropout");
    }
    if (!ok) throw new Error(`accepted: ${f}`);
  }
});

Deno.test("max_axis: reference against torch.max(dim, keepdim) written out, ties included", () => {
  const g = new Graph();
  const x = g.input("x", [2, 3, 2]);
  const xs = Float64Array.of(1, 5, 1, 5, 0, 5, 2, 2, 2, 2, 2, 3);
  const [dx] = gradients(sum(maxAxis(x, 1), [0, 1, 2]), [x]);
  const res = runRef({ y: maxAxis(x, 1), dx }, new Map([["x", xs]]));
  assertClose("y", res.y, [1, 5, 2, 3], 0, 0);
  // torch routes the gradient of max(dim) to the index it returns: the first maximum.
  assertClose("dx", res.dx, [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], 0, 0);
});

/** y[b,o,l] = bias[o] + sum_c sum_t w[o,c,t] x[b,c,l-padding+t], zero outside (torch Conv1d). */
function conv1dLoop(
  x: Float64Array,
  w: Float64Array,
  bias: Float64Array,
  [B, C, L]: number[],
  O: number,
  k: number,
  padding: number,
): Float64Array {
  const Lo = L + 2 * padding - k + 1;
  const y = new Float64Array(B * O * Lo);
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < O; o++) {
      for (let l = 0; l < Lo; l++) {
        let s = bias[o];
        for (let c = 0; c < C; c++) {
          for (let t = 0; t < k; t++) {
            const j = l - padding + t;
            if (j >= 0 && j < L) s += w[(o * C + c) * k + t] * x[(b * C + c) * L + j];
          }
        }
        y[(b * O + o) * Lo + l] = s;
      }
    }
  }
  return y;
}

/** A conv1dLayer graph with the loss sum(y * r) and gradients for x, weight and bias. */
function conv1dLayerGraph(shape: number[], cout: number) {
  const g = new Graph();
  const x = g.input("x", shape);
  const y = conv1dLayer({ g, training: true }, "text1", x, cout);
  const r = g.input("r", y.shape);
  const w = g.get("text1.weight")!, b = g.get("text1.bias")!;
  const [dx, dw, db] = gradients(sum(mul(y, r), [0, 1, 2]), [x, w, b]);
  const leaves = new Map([
    ["x", randn(x.size, 61)],
    ["text1.weight", randn(w.size, 62)],
    ["text1.bias", randn(b.size, 63)],
    ["r", randn(y.size, 64)],
  ]);
  return { g, x, y, w, b, outs: { y, dx, dw, db }, leaves };
}

Deno.test("conv1dLayer: PyTorch layout, init and output against a loop from the definition", () => {
  const shape = [2, 3, 7];
  const { y, w, b, leaves } = conv1dLayerGraph(shape, 4);
  if (w.shape.join() !== "4,3,3" || b.shape.join() !== "4" || y.shape.join() !== "2,4,7") {
    throw new Error(`shapes: w [${w.shape}] b [${b.shape}] y [${y.shape}]`);
  }
  const bound = 1 / Math.sqrt(3 * 3);
  for (const p of [w, b]) {
    const init = p.init as { kind: string; bound: number };
    if (init.kind !== "uniform" || Math.abs(init.bound - bound) > 1e-15) {
      throw new Error(`${p.name}: init ${JSON.stringify(init)}, want U(+-${bound})`);
    }
  }
  const got = runRef({ y }, leaves).y;
  const want = conv1dLoop(
    leaves.get("x")!,
    leaves.get("text1.weight")!,
    leaves.get("text1.bias")!,
    shape,
    4,
    3,
    1,
  );
  assertClose("conv1dLayer vs loop", got, want, 1e-12, 0);
  // The functional form with other paddings and kernel sizes against the same loop.
  for (const [k, padding] of [[5, 2], [3, 0], [1, 0]]) {
    const g = new Graph();
    const x = g.input("x", [2, 3, 9]);
    const wt = g.input("w", [2, 3, k]);
    const bt = g.input("b", [2]);
    const l = new Map([["x", randn(54, 65)], ["w", randn(6 * k, 66)], ["b", randn(2, 67)]]);
    const yy = runRef({ y: conv1d(x, wt, bt, padding) }, l).y;
    const ww = conv1dLoop(l.get("x")!, l.get("w")!, l.get("b")!, [2, 3, 9], 2, k, padding);
    assertClose(`conv1d k ${k} padding ${padding} vs loop`, yy, ww, 1e-12, 0);
  }
});

for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `conv1dLayer: forward and parameter gradients against the reference [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      for (const [shape, cout] of [[[2, 3, 7], 4], [[2, 10, 17], 5]] as const) {
        const { outs, leaves } = conv1dLayerGraph([...shape], cout);
        const want = runRef(outs, leaves);
        const got = await runOn(target, outs, leaves);
        for (const k of Object.keys(outs)) {
          assertClose(`conv1dLayer [${shape}] ${k}`, got[k], want[k], 5e-6, 1e-5);
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// batchNorm1d

/** A training-mode batchNorm1d graph with gradients for x, weight and bias. */
function bn1dGraph(shape: number[], training = true) {
  const g = new Graph();
  const x = g.input("x", shape);
  const y = batchNorm1d({ g, training }, "ctbn.norm", x);
  const r = g.input("r", y.shape);
  const C = shape[1];
  const ws = [x, g.get("ctbn.norm.weight")!, g.get("ctbn.norm.bias")!];
  const outs: Record<string, Tensor> = { y };
  if (training) {
    const [dx, dw, db] = gradients(sum(mul(y, r), y.shape.map((_, i) => i)), ws);
    Object.assign(outs, { dx, dw, db });
  }
  const leaves = new Map([
    ["x", randn(x.size, 71, 2)],
    ["r", randn(y.size, 72)],
    ["ctbn.norm.weight", Float64Array.from(randn(C, 73), (v) => 1 + 0.3 * v)],
    ["ctbn.norm.bias", randn(C, 74)],
    ["ctbn.norm.running_mean", randn(C, 75)],
    ["ctbn.norm.running_var", Float64Array.from(randn(C, 76), (v) => 1 + v * v)],
  ]);
  return { g, y, outs, leaves };
}

const copy = (m: Map<string, Float64Array>) =>
  new Map([...m].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))]));

Deno.test("batchNorm1d: reference against nn.BatchNorm1d's formulas (training and eval)", () => {
  const [B, C, L] = [3, 4, 5];
  const { g, y, leaves } = bn1dGraph([B, C, L]);
  const l = copy(leaves);
  const got = runRef({ y }, l, g.effects);
  const x = leaves.get("x")!, gm = leaves.get("ctbn.norm.weight")!;
  const bt = leaves.get("ctbn.norm.bias")!, rm0 = leaves.get("ctbn.norm.running_mean")!;
  const rv0 = leaves.get("ctbn.norm.running_var")!;
  const want = new Float64Array(B * C * L);
  for (let c = 0; c < C; c++) {
    const vals: number[] = [];
    for (let b = 0; b < B; b++) for (let j = 0; j < L; j++) vals.push(x[(b * C + c) * L + j]);
    const m = vals.reduce((s, v) => s + v, 0) / vals.length;
    const v = vals.reduce((s, u) => s + (u - m) ** 2, 0) / vals.length;
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < L; j++) {
        const i = (b * C + c) * L + j;
        want[i] = (x[i] - m) / Math.sqrt(v + Math.fround(1e-5)) * gm[c] + bt[c];
      }
    }
    // Running statistics: momentum 0.1, unbiased variance (n / (n - 1)).
    const n = B * L;
    const rm = 0.9 * rm0[c] + Math.fround(0.1) * m;
    const rv = 0.9 * rv0[c] + Math.fround(0.1) * Math.fround(n / (n - 1)) * v;
    assertClose(`running_mean[${c}]`, [l.get("ctbn.norm.running_mean")![c]], [rm], 1e-7, 1e-6);
    assertClose(`running_var[${c}]`, [l.get("ctbn.norm.running_var")![c]], [rv], 1e-7, 1e-6);
  }
  assertClose("batchNorm1d training", got.y, want, 1e-7, 1e-7);
  // Eval: the running statistics (before this step's update) normalise.
  const ev = bn1dGraph([B, C, L], false);
  const ye = runRef({ y: ev.y }, leaves).y;
  const we = Array.from(x, (v, i) => {
    const c = Math.floor(i / L) % C;
    return (v - rm0[c]) / Math.sqrt(rv0[c] + Math.fround(1e-5)) * gm[c] + bt[c];
  });
  assertClose("batchNorm1d eval", ye, we, 1e-12, 1e-12);
});

// Statistics over B*L terms (<= 2*64), then division by the standard deviation (inputs are
// 2 N(0,1), std ~ 2): as the fused batch-norm cases of ops_test, atol 1e-5, rtol 1e-5. The
// running statistics take one multiply-add of those: 1e-6.
for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `batchNorm1d: training (+ running stats) and eval against the reference [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      // [B, C, L]: odd sizes, L = 1, the CTBN3 normalisation over 196 patches, a [B, C] input.
      for (const shape of [[3, 5, 7], [4, 3, 1], [2, 196, 16], [2, 12, 9], [6, 4]]) {
        const { g, outs, leaves } = bn1dGraph(shape);
        const refL = copy(leaves), devL = copy(leaves);
        const want = runRef(outs, refL, g.effects);
        const got = await runOn(target, outs, devL, g.effects);
        for (const k of Object.keys(outs)) {
          assertClose(`batchNorm1d [${shape}] ${k}`, got[k], want[k], 1e-5, 1e-5);
        }
        for (const k of ["ctbn.norm.running_mean", "ctbn.norm.running_var"]) {
          assertClose(`batchNorm1d [${shape}] ${k}`, devL.get(k)!, refL.get(k)!, 1e-6, 1e-6);
        }
        const ev = bn1dGraph(shape, false);
        const we = runRef({ y: ev.y }, copy(ev.leaves)).y;
        const ge = await runOn(target, { y: ev.y }, copy(ev.leaves));
        assertClose(`batchNorm1d eval [${shape}]`, ge.y, we, 1e-5, 1e-5);
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Coverage: every op this file owns was exercised above. Deno runs tests in file order.

suite.coverageTest(["gelu_grad", "max_axis_grad", "dropout"]);
