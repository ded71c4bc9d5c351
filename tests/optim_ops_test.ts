/**
 * The effect ops (lib/graph/ops/optim.ts): assign and adam update params/states in place at the
 * end of the program, on each backend against the reference and a hand-written
 * torch.optim.Adam loop; last, coverage. Their kernel shapes are in tests/op_info/optim.ts.
 */
import {
  add,
  affine,
  gradients,
  Graph,
  mul,
  neg,
  reshape,
  square,
  sub,
  sum,
} from "../lib/graph/mod.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { assertClose, noGpu, randn, runOn } from "./harness.ts";
import { copyLeaves, OpSuite } from "./op_suite.ts";
import { OPTIM_TABLE } from "./op_info/optim.ts";

const suite = new OpSuite("optim_ops_test.ts");
suite.table(OPTIM_TABLE);

for (const target of ["webgpu", "cpu"] as const) {
  Deno.test({
    name: `assign: in-place updates after every reader [${target}]`,
    ignore: target === "webgpu" && noGpu,
    fn: async () => {
      const g = new Graph();
      const s = g.state("s", [3, 5], { kind: "const", value: 0 });
      const u = g.param("u", [15], { kind: "const", value: 0 });
      const x = g.input("x", [3, 5]);
      // y reads the old s; s becomes 0.5 (s + x) + 1; u becomes the flat x (an aliased source).
      const y = mul(s, x);
      const e1 = g.apply("assign", [s, affine(add(s, x), 0.5, 1)]);
      const e2 = g.apply("assign", [u, reshape(x, [15])]);
      const leaves = new Map([["s", randn(15, 501)], ["u", randn(15, 502)], ["x", randn(15, 503)]]);
      const refLeaves = copyLeaves(leaves);
      const gpuLeaves = copyLeaves(leaves);
      const want = runRef({ y }, refLeaves, [e1, e2]);
      const got = await runOn(target, { y }, gpuLeaves, [e1, e2]);
      for (const t of [e1, e2]) suite.effects[target].add(t.op);
      assertClose("assign y (old s)", got.y, want.y, 1e-6, 1e-6);
      assertClose("assign s", gpuLeaves.get("s")!, refLeaves.get("s")!, 1e-6, 1e-6);
      assertClose("assign u", gpuLeaves.get("u")!, refLeaves.get("u")!, 0, 0);
      // The reference itself: s = 0.5 (s0 + x) + 1, u = x.
      const s0 = copyLeaves(leaves).get("s")!, x0 = copyLeaves(leaves).get("x")!;
      assertClose(
        "assign ref s",
        refLeaves.get("s")!,
        s0.map((v, i) => 0.5 * (v + x0[i]) + 1),
        1e-12,
        0,
      );
      assertClose("assign ref u", refLeaves.get("u")!, x0, 0, 0);
    },
  });
}

Deno.test("assign: targets must be params or states (compile error)", async () => {
  const g = new Graph();
  const x = g.input("x", [3]);
  const e = g.apply("assign", [x, neg(x)]);
  const { compile } = await import("../lib/backends/compile.ts");
  let msg = "";
  try {
    compile({}, [e]);
  } catch (err) {
    msg = (err as Error).message;
  }
  if (!/not a param or state/.test(msg)) {
    throw new Error(`expected an in-place error, got '${msg}'`);
  }
});

interface AdamCfg {
  name: string;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
}
const ADAM: AdamCfg[] = [
  { name: "Adam", lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false },
  {
    name: "Adam + L2 0.01",
    lr: 0.05,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decoupled: false,
  },
  {
    name: "AdamW 0.01",
    lr: 0.05,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decoupled: true,
  },
];
const STEPS = 3;

/**
 * torch.optim.Adam / AdamW (amsgrad=False, maximize=False), written from the PyTorch docs'
 * algorithm, for loss = sum((p - tgt)^2 * c) whose gradient is 2 (p - tgt) c.
 */
function torchAdam(cfg: AdamCfg, p0: Float64Array, tgt: Float64Array, c: Float64Array) {
  const p = p0.slice();
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  for (let t = 1; t <= STEPS; t++) {
    for (let i = 0; i < p.length; i++) {
      let g = 2 * (p[i] - tgt[i]) * c[i];
      if (cfg.decoupled) p[i] = p[i] * (1 - cfg.lr * cfg.weightDecay); // AdamW
      else g = g + cfg.weightDecay * p[i]; // Adam's L2 penalty
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
      const mHat = m[i] / (1 - cfg.beta1 ** t);
      const vHat = v[i] / (1 - cfg.beta2 ** t);
      p[i] = p[i] - cfg.lr * mHat / (Math.sqrt(vHat) + cfg.eps);
    }
  }
  return { p, m, v };
}

function adamGraph(cfg: AdamCfg, shape: number[]) {
  const g = new Graph();
  const p = g.param("p", shape, { kind: "const", value: 0 });
  const m = g.state("m", shape, { kind: "const", value: 0 });
  const v = g.state("v", shape, { kind: "const", value: 0 });
  const tgt = g.input("tgt", shape);
  const c = g.input("c", shape);
  const h = g.input("hyper", [3]);
  const loss = sum(mul(square(sub(p, tgt)), c), shape.map((_, i) => i));
  const [gp] = gradients(loss, [p]);
  const { name: _n, lr: _lr, ...attrs } = cfg;
  const e = g.apply("adam", [p, gp, m, v, h], attrs);
  return { g, e };
}

// Adam on WebGPU vs float64: p, m, v are O(1) f32 values updated by O(lr) steps, with one sqrt
// and one division per step (a few ulp each): atol 1e-6, rtol 1e-5 over 3 steps.
for (const cfg of ADAM) {
  const shape = [5, 7];
  const n = 35;
  const start = () =>
    new Map<string, Float64Array>([
      ["p", randn(n, 601)],
      ["m", new Float64Array(n)],
      ["v", new Float64Array(n)],
      ["tgt", randn(n, 602)],
      // Some coordinates get tiny gradients so the update is eps-sensitive there.
      ["c", Float64Array.from(randn(n, 603), (x, i) => (i % 7 === 0 ? 1e-4 : 0.5 + x * x))],
      ["hyper", new Float64Array(3)],
    ]);
  const setHyper = (l: Map<string, Float64Array>, t: number) =>
    l.set("hyper", Float64Array.from([cfg.lr, 1 - cfg.beta1 ** t, 1 - cfg.beta2 ** t]));

  Deno.test(`adam: ${cfg.name}, ${STEPS} steps, reference vs torch semantics`, () => {
    const { e } = adamGraph(cfg, shape);
    const leaves = copyLeaves(start());
    const want = torchAdam(cfg, leaves.get("p")!, leaves.get("tgt")!, leaves.get("c")!);
    for (let t = 1; t <= STEPS; t++) {
      setHyper(leaves, t);
      runRef({}, leaves, [e]);
    }
    for (const k of ["p", "m", "v"] as const) {
      assertClose(`${cfg.name} ref ${k}`, leaves.get(k)!, want[k], 1e-12, 1e-12);
    }
  });

  for (const target of ["webgpu", "cpu"] as const) {
    Deno.test({
      name: `adam: ${cfg.name}, ${STEPS} steps, ${target} vs torch semantics [${target}]`,
      ignore: target === "webgpu" && noGpu,
      fn: async () => {
        const { e } = adamGraph(cfg, shape);
        suite.effects[target].add(e.op);
        const leaves = copyLeaves(start());
        const want = torchAdam(cfg, leaves.get("p")!, leaves.get("tgt")!, leaves.get("c")!);
        for (let t = 1; t <= STEPS; t++) {
          setHyper(leaves, t);
          await runOn(target, {}, leaves, [e]);
        }
        assertClose(`${cfg.name} ${target} p`, leaves.get("p")!, want.p, 1e-6, 1e-5);
        assertClose(`${cfg.name} ${target} m`, leaves.get("m")!, want.m, 1e-6, 1e-5);
        assertClose(`${cfg.name} ${target} v`, leaves.get("v")!, want.v, 1e-7, 1e-5);
      },
    });
  }
}

Deno.test("adam: the three variants differ (the comparisons above can tell them apart)", () => {
  const n = 35;
  const p0 = Float64Array.from(Float32Array.from(randn(n, 601)));
  const tgt = Float64Array.from(Float32Array.from(randn(n, 602)));
  const c = new Float64Array(n).fill(1);
  const [a, l2, w] = ADAM.map((cfg) => torchAdam(cfg, p0, tgt, c).p);
  const maxDiff = (x: Float64Array, y: Float64Array) =>
    x.reduce((s, v, i) => Math.max(s, Math.abs(v - y[i])), 0);
  // 100x the WebGPU tolerance on p.
  if (maxDiff(a, l2) < 1e-4 || maxDiff(a, w) < 1e-4 || maxDiff(l2, w) < 1e-4) {
    throw new Error(`variants too close: ${maxDiff(a, l2)} ${maxDiff(a, w)} ${maxDiff(l2, w)}`);
  }
});

suite.coverageTest([]);
