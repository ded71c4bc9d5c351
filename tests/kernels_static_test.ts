/**
 * Static checks of the generated WGSL, no device needed. Determinism (design.md 4) rests on every
 * float being summed by one invocation in a fixed order: no atomics, and no workgroup-shared
 * accumulators synchronised with barriers. These tests generate the kernels of every op of the
 * table for the shapes of its family's sample table (tests/op_info: every op node of every sample,
 * forward and backward, and the `static` samples), directly through the webgpu lowering table,
 * and through `lower()` of a whole training step, and reject any kernel that breaks the rule.
 * They also check that each kernel's declared bindings agree with the binding list the compiler
 * will bind.
 */
import {
  add,
  affine,
  allOps,
  bce,
  concat,
  conv2d,
  convTranspose,
  getOp,
  gradients,
  Graph,
  maxpool2d,
  mean,
  mul,
  type OpDef,
  relu,
  reshape,
  type Shape,
  sigmoid,
  SPEC_LIMITS,
  sum,
  type Tensor,
  upsampleNearest2d,
} from "../lib/graph/mod.ts";
import type { WgslKernel } from "../kernels/webgpu/types.ts";
import type { StaticSample, SuiteCase } from "./op_suite.ts";
import { OP_TABLES } from "./op_info/mod.ts";
import { lower, wgslPlan } from "../lib/backends/webgpu/lower.ts";

type Attrs = Record<string, unknown>;

/** Removes WGSL comments so that prose about atomics does not count as using them. */
function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

/**
 * Why `k` breaks the determinism rules or disagrees with its bindings, or [] when it is fine.
 * The rule: no `atomic` anywhere (atomic<f32>/<u32> types, atomicAdd, ...), no
 * workgroupBarrier / storageBarrier, and no `var<workgroup>` float storage (shared accumulators).
 */
function kernelViolations(k: WgslKernel): string[] {
  const code = stripComments(k.code);
  const bad: string[] = [];
  if (/atomic/i.test(code)) bad.push("uses atomics");
  for (const b of ["workgroupBarrier", "storageBarrier", "textureBarrier"]) {
    if (code.includes(b)) bad.push(`uses ${b}`);
  }
  if (/var\s*<\s*workgroup\s*>[^;]*f32/.test(code)) {
    bad.push("declares workgroup-shared f32 storage");
  }
  if (!/@compute\s+@workgroup_size\(/.test(code) || !/fn\s+main\s*\(/.test(code)) {
    bad.push("has no @compute entry point `main`");
  }
  if (!(Number.isInteger(k.workgroups) && k.workgroups >= 1)) {
    bad.push(`dispatches ${k.workgroups} workgroups`);
  }
  // Declared bindings: @binding(i) var<storage, read|read_write>, one per entry of k.bindings.
  const decl = new Map<number, string>();
  for (const m of code.matchAll(/@binding\((\d+)\)\s*var<storage,\s*(read_write|read)>/g)) {
    const i = Number(m[1]);
    if (decl.has(i)) bad.push(`declares binding ${i} twice`);
    decl.set(i, m[2]);
  }
  if (decl.size !== k.bindings.length) {
    bad.push(`declares ${decl.size} bindings but binds ${k.bindings.length}`);
  }
  k.bindings.forEach((b, i) => {
    const writes = "out" in b || "scratch" in b || "inplace" in b;
    const want = writes ? "read_write" : "read";
    if (decl.get(i) !== want) bad.push(`binding ${i} is '${decl.get(i)}', expected '${want}'`);
  });
  return bad;
}

/**
 * Every op node (input shapes and attributes) of a sample's graph: its forward and, unless
 * forwardOnly, the backward that autodiff builds for loss = sum(y * r), as tests/harness.ts's
 * buildCase does, without generating values.
 */
function nodesOf(c: SuiteCase): StaticSample[] {
  const g = new Graph();
  const xs: Record<string, Tensor> = {};
  for (const [name, spec] of Object.entries(c.inputs)) xs[name] = g.input(name, spec.shape);
  const y = c.build(xs);
  if (!c.forwardOnly) {
    const loss = sum(mul(y, g.input("__r", y.shape)), y.shape.map((_, i) => i));
    const names = Object.keys(c.inputs).filter((n) => !c.inputs[n].noGrad);
    gradients(loss, names.map((n) => xs[n]));
  }
  return g.nodes.flatMap((t) =>
    t.kind === "node" ? [{ op: t.op, inputs: t.inputs.map((i) => i.shape), attrs: t.attrs }] : []
  );
}

/**
 * Input shapes and attributes per op, drawn from the sample tables (tests/op_info): every op node
 * of every sample, plus each table's `static` samples. The kernels are specialised to them.
 */
const SPECS: Map<string, [Shape[], Attrs][]> = (() => {
  const specs = new Map<string, [Shape[], Attrs][]>();
  const seen = new Set<string>();
  const add = ({ op, inputs, attrs = {} }: StaticSample) => {
    const key = `${op}(${inputs.map((s) => `[${s}]`).join()})${JSON.stringify(attrs)}`;
    if (seen.has(key)) return;
    seen.add(key);
    if (!specs.has(op)) specs.set(op, []);
    specs.get(op)!.push([inputs, attrs]);
  };
  for (const table of OP_TABLES) {
    for (const group of table.groups) group.samples.flatMap(nodesOf).forEach(add);
    (table.static ?? []).forEach(add);
  }
  return specs;
})();

/** The kernels of `op` for one spec, labelled for messages. */
function kernelsFor(op: OpDef, ins: Shape[], attrs: Attrs): { label: string; k: WgslKernel }[] {
  const out = op.shape(ins, attrs);
  // Alias ops (reshape) have no kernels: they share their input's buffer.
  const plan = op.alias ? { kernels: [] } : wgslPlan(op, ins, attrs, out);
  const label = `${op.name}(${ins.map((s) => `[${s}]`).join(", ")})`;
  return plan.kernels.map((k, i) => ({ label: `${label} kernel ${i}`, k }));
}

function check(list: { label: string; k: WgslKernel }[]): string[] {
  return list.flatMap(({ label, k }) => kernelViolations(k).map((v) => `${label}: ${v}`));
}

Deno.test("every op's kernels: no atomics, no barriers or shared accumulators, bindings agree", () => {
  const problems: string[] = [];
  let kernels = 0;
  for (const op of allOps()) {
    const specs = SPECS.get(op.name) ?? [];
    if (!specs.length) {
      problems.push(`${op.name}: no sample in tests/op_info to generate kernels for`);
    }
    for (const [ins, attrs] of specs) {
      const ks = kernelsFor(op, ins, attrs);
      if (!ks.length && !op.alias) problems.push(`${op.name}: no kernels generated`);
      kernels += ks.length;
      problems.push(...check(ks));
    }
  }
  if (problems.length) throw new Error(problems.join("\n"));
  if (kernels < 80) throw new Error(`only ${kernels} kernels generated`);
});

Deno.test("the split-K GEMM and two-stage sum really generate their second pass", () => {
  // Guards the specs above: the multi-kernel paths are the ones that combine partial sums.
  const cases: [string, Shape[], Attrs][] = [
    ["sum", [[3, 2, 37, 41]], { axes: [0, 2, 3] }],
    ["conv2d", [[1, 29, 4, 4], [3, 29, 3, 3], [3]], { stride: 1, padding: 0, dilation: 1 }],
    [
      "conv2d_bwd_weight",
      [[3, 2, 11, 11], [3, 3, 11, 11]],
      { stride: 1, padding: 1, dilation: 1, wShape: [3, 2, 3, 3] },
    ],
    ["conv_transpose_bwd_weight", [[3, 3, 9, 10], [3, 2, 18, 20]], { wShape: [3, 2, 2, 2] }],
  ];
  for (const [name, ins, attrs] of cases) {
    const n = kernelsFor(getOp(name), ins, attrs).length;
    if (n !== 2) {
      throw new Error(`${name}: expected 2 kernels (partial sums, then combine), got ${n}`);
    }
  }
});

/** A small U-Net-like training step: forward, loss, backward and Adam, as one program. */
function trainingStep(): { outputs: Record<string, Tensor>; effects: Tensor[] } {
  const g = new Graph();
  const init = { kind: "uniform" as const, bound: 0.3 };
  const x = g.input("x", [3, 3, 12, 10]);
  const y = g.input("y", [3, 1, 12, 10]);
  const hyper = g.input("hyper", [3]);
  const w1 = g.param("w1", [5, 3, 3, 3], init);
  const b1 = g.param("b1", [5], init);
  const w2 = g.param("w2", [7, 5, 3, 3], init);
  const wt = g.param("wt", [7, 5, 2, 2], init);
  const w3 = g.param("w3", [1, 10, 1, 1], init);
  const b3 = g.param("b3", [1], init);
  const h1 = relu(conv2d(x, w1, b1, { padding: 1 }));
  const h2 = relu(conv2d(maxpool2d(h1, 2), w2, undefined, { padding: 2, dilation: 2 }));
  const u = add(convTranspose(h2, wt), upsampleNearest2d(slice5(h2), 2));
  const p = sigmoid(conv2d(concat([h1, u], 1), w3, b3));
  const loss = add(mean(bce(p, y), [0, 1, 2, 3]), affine(sum(mul(p, p), [0, 1, 2, 3]), 1e-3, 0));
  const params = [w1, b1, w2, wt, w3, b3];
  const grads = gradients(reshape(loss, [1]), params);
  const effects = params.map((t, i) => {
    const m = g.state(`m${i}`, t.shape, { kind: "const", value: 0 });
    const v = g.state(`v${i}`, t.shape, { kind: "const", value: 0 });
    const a = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true };
    return g.apply("adam", [t, grads[i], m, v, hyper], a);
  });
  const step = g.state("step", [1], { kind: "const", value: 0 });
  effects.push(g.apply("assign", [step, add(step, 1)]));
  return { outputs: { loss, p }, effects };
}
/** The first 5 channels of a 7-channel tensor (a slice, so the graph holds one). */
function slice5(t: Tensor): Tensor {
  return t.graph.apply("slice", [t], { axis: 1, start: 0, size: 5 });
}

Deno.test("a compiled training step: every dispatch passes the same checks", () => {
  const { outputs, effects } = trainingStep();
  const prog = lower(outputs, effects, SPEC_LIMITS);
  const problems = check(prog.steps.map((s) => ({ label: s.label, k: s.kernel })));
  if (problems.length) throw new Error(problems.join("\n"));
  const ops = new Set(prog.steps.map((s) => s.label.split("#")[0]));
  for (const want of ["conv2d_bwd_weight", "conv_transpose_bwd_data", "maxpool2d_bwd", "adam"]) {
    if (!ops.has(want)) throw new Error(`the training step has no ${want} dispatch`);
  }
});

Deno.test("the checker rejects atomics, barriers and shared accumulators", () => {
  // A correct kernel, taken from the table, passes...
  const good = kernelsFor(getOp("add"), [[3, 5], [1, 5]], {})[0].k;
  if (kernelViolations(good).length) throw new Error(`${kernelViolations(good)}`);
  // ...and the same kernel with a float atomic scatter, a shared accumulator or a barrier fails.
  const edits: [string, (c: string) => string][] = [
    ["atomicAdd", (c) => c.replace(/out\[i\] = (.*);/, "atomicAdd(&acc[0], u32($1));")],
    ["atomic type", (c) => `var<workgroup> flag: atomic<u32>;\n${c}`],
    [
      "shared accumulator",
      (c) =>
        `var<workgroup> part: array<f32, 64>;\n${
          c.replace(
            /out\[i\] = (.*);/,
            "part[lid] = $1;\n  workgroupBarrier();\n  out[i] = part[0];",
          )
        }`,
    ],
    ["storageBarrier", (c) => c.replace(/out\[i\] = (.*);/, "out[i] = $1;\n  storageBarrier();")],
    ["read-only output", (c) => c.replace("read_write", "read")],
  ];
  for (const [what, edit] of edits) {
    const code = edit(good.code);
    if (code === good.code) throw new Error(`${what}: the edit did not apply`);
    if (!kernelViolations({ ...good, code }).length) throw new Error(`${what} was not rejected`);
  }
  // A comment about atomics is not a use of them.
  const commented = { ...good, code: `// no atomics, no atomicAdd\n${good.code}` };
  if (kernelViolations(commented).length) throw new Error("a comment was taken for code");
  // And a whole op plan containing such a kernel fails the per-op check.
  const bad = { ...good, code: good.code.replace(/out\[i\] = (.*);/, "atomicAdd(&out[i], $1);") };
  if (!check([{ label: "fake", k: bad }]).some((m) => m.includes("atomics"))) {
    throw new Error("check() let an atomicAdd kernel through");
  }
});
