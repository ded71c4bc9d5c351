/**
 * Static checks of the generated WGSL, no device needed. Determinism (design.md 4) rests on every
 * float being summed by one invocation in a fixed order: no atomics, and no workgroup-shared
 * accumulators synchronised with barriers. These tests generate the kernels of every op of the
 * table for the shapes of its family's sample table (tests/op_info: every op node of every sample,
 * forward and backward, and the `static` samples), directly through the webgpu lowering table,
 * and through `lower()` of a whole training step, and reject any kernel that breaks the rule.
 * They also check that each kernel's declared bindings agree with the binding list the compiler
 * will bind.
 *
 * Both kernel classes: the software class uses no workgroup memory and no barriers at all; the
 * hardware class's tiled GEMMs (kernels/webgpu/gemm.ts) may use workgroup memory and
 * workgroupBarrier only to stage operands: every value stored into a workgroup array is a register
 * loaded from a storage buffer (never one computed from workgroup memory, such as an
 * accumulator), the arrays fit the device's workgroup storage, and the workgroup has at most 256
 * invocations. Every GEMM op of the hardware class really gets the tiled generator.
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
import { type KernelTarget, SOFTWARE_TARGET, type WgslKernel } from "../kernels/webgpu/types.ts";
import { GEMM_OPS, type StaticSample, type SuiteCase } from "./op_suite.ts";
import { OP_TABLES } from "./op_info/mod.ts";
import { lower, wgslPlan } from "../lib/backends/webgpu/lower.ts";

/** The hardware class with the spec's default limits, and with a GPU's 48 KiB (bigger tiles). */
const HW_SPEC: KernelTarget = { ...SOFTWARE_TARGET, kernels: "hardware" };
const HW_48K: KernelTarget = { ...HW_SPEC, maxComputeWorkgroupStorageSize: 49152 };

type Attrs = Record<string, unknown>;

/** Removes WGSL comments so that prose about atomics does not count as using them. */
function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

/**
 * Why `k` breaks the determinism rules or disagrees with its bindings, or [] when it is fine.
 * The rule: no `atomic` anywhere (atomic<f32>/<u32> types, atomicAdd, ...), no storageBarrier,
 * and, unless `staging` (hardware-class GEMMs), no workgroupBarrier and no `var<workgroup>`
 * float storage (shared accumulators); with `staging`, workgroup memory only as operand staging
 * (`stagingViolations`) within `storageBytes`.
 */
function kernelViolations(k: WgslKernel, staging = false, storageBytes = 16384): string[] {
  const code = stripComments(k.code);
  const bad: string[] = [];
  if (/atomic/i.test(code)) bad.push("uses atomics");
  for (const b of ["storageBarrier", "textureBarrier", ...(staging ? [] : ["workgroupBarrier"])]) {
    if (code.includes(b)) bad.push(`uses ${b}`);
  }
  if (!staging && /var\s*<\s*workgroup\s*>[^;]*f32/.test(code)) {
    bad.push("declares workgroup-shared f32 storage");
  }
  if (staging) bad.push(...stagingViolations(code, storageBytes));
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
 * Workgroup memory as operand staging only: every store into a workgroup array stores a plain
 * register, and every assignment to such a register reads no workgroup array (so the register
 * holds an operand loaded from a storage buffer, never a partial sum of other invocations); the
 * arrays fit in `storageBytes`; at most 256 invocations per workgroup.
 */
function stagingViolations(code: string, storageBytes: number): string[] {
  const bad: string[] = [];
  const arrays = new Map<string, number>();
  for (const m of code.matchAll(/var\s*<\s*workgroup\s*>\s*(\w+)\s*:\s*([^;]+);/g)) {
    const t = m[2].replace(/\s/g, "");
    const a = /^array<(vec4<f32>|f32),(\d+)>$/.exec(t);
    if (!a) bad.push(`workgroup variable '${m[1]}' has type ${t}, not an f32 / vec4<f32> array`);
    else arrays.set(m[1], Number(a[2]) * (a[1] === "f32" ? 4 : 16));
  }
  const bytes = [...arrays.values()].reduce((x, y) => x + y, 0);
  if (bytes > storageBytes) bad.push(`uses ${bytes} bytes of workgroup memory (> ${storageBytes})`);
  const size = /@workgroup_size\(([^)]*)\)/.exec(code)?.[1].split(",").map((v) => Number(v));
  if (size && size.reduce((x, y) => x * y, 1) > 256) bad.push(`workgroup of ${size} invocations`);
  if (!arrays.size) return bad;
  const reads = new RegExp(`\\b(${[...arrays.keys()].join("|")})\\s*\\[`);
  const registers = new Set<string>();
  // Stores into workgroup arrays: NAME[...](...) = VALUE; (compound assignments refused).
  for (const m of code.matchAll(/\b(\w+)\s*\[[^;=]*\]\s*([-+*\/]?)=(?!=)\s*([^;]+);/g)) {
    if (!arrays.has(m[1])) continue;
    const v = m[3].trim();
    if (m[2]) bad.push(`updates workgroup array '${m[1]}' with ${m[2]}=`);
    if (!/^\w+$/.test(v)) bad.push(`stores '${v}' into workgroup array '${m[1]}', not a register`);
    else registers.add(v);
  }
  for (const r of registers) {
    for (const m of code.matchAll(new RegExp(`(?:var|let)?\\s*\\b${r}\\s*=\\s*([^;]+);`, "g"))) {
      if (reads.test(m[1]) || /\bacc\w*/.test(m[1])) {
        bad.push(`register '${r}' staged into workgroup memory is computed from '${m[1]}'`);
      }
    }
  }
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

/** The kernels of `op` for one spec and target, labelled for messages. */
function kernelsFor(
  op: OpDef,
  ins: Shape[],
  attrs: Attrs,
  target: KernelTarget = SOFTWARE_TARGET,
): { label: string; k: WgslKernel }[] {
  const out = op.shape(ins, attrs);
  // Alias ops (reshape) have no kernels: they share their input's buffer.
  const plan = op.alias ? { kernels: [] } : wgslPlan(op, ins, attrs, out, target);
  const label = `${op.name}(${ins.map((s) => `[${s}]`).join(", ")})`;
  return plan.kernels.map((k, i) => ({ label: `${label} kernel ${i}`, k }));
}

function check(
  list: { label: string; k: WgslKernel }[],
  target: KernelTarget = SOFTWARE_TARGET,
): string[] {
  const staging = target.kernels === "hardware";
  return list.flatMap(({ label, k }) =>
    kernelViolations(k, staging, target.maxComputeWorkgroupStorageSize).map((v) => `${label}: ${v}`)
  );
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

/** GEMM shapes that reach the 128 x 128 tiles (both sides >= 256) of a 48 KiB device. */
const BIG_GEMMS: StaticSample[] = [
  { op: "matmul", inputs: [[260, 40], [40, 300]], attrs: { transA: false, transB: false } },
  {
    op: "conv2d",
    inputs: [[1, 4, 16, 17], [260, 4, 3, 3]],
    attrs: { stride: 1, padding: 1, dilation: 1 },
  },
];

Deno.test("the hardware class: workgroup memory only stages operands, every GEMM is tiled", () => {
  const problems: string[] = [];
  let tiled = 0, big = 0;
  for (const target of [HW_SPEC, HW_48K]) {
    const specs = [...SPECS].flatMap(([name, list]) =>
      list.map(([ins, attrs]) => ({ op: name, inputs: ins, attrs }))
    );
    for (const { op: name, inputs, attrs = {} } of [...specs, ...BIG_GEMMS]) {
      const op = getOp(name);
      const ks = kernelsFor(op, inputs, attrs, target);
      problems.push(...check(ks, target));
      // The same target and shapes give the same kernels (a compiled program is a function of
      // its class, limits and shapes).
      const again = kernelsFor(op, inputs, attrs, target);
      if (
        again.some((k, i) => k.k.code !== ks[i].k.code || k.k.workgroups !== ks[i].k.workgroups)
      ) {
        problems.push(`${ks[0].label}: generated twice, differs`);
      }
      if (GEMM_OPS.has(name)) {
        // The first dispatch is the tiled GEMM; a second one adds split-K partial sums.
        const code = ks[0].k.code;
        if (!/var<workgroup>/.test(code) || !code.includes("workgroupBarrier()")) {
          problems.push(`${ks[0].label}: not the tiled generator`);
        }
        tiled++;
        if (/tile 128x128x8/.test(code)) big++;
      } else {
        // Other ops do not depend on the class.
        const sw = kernelsFor(op, inputs, attrs);
        if (sw.length !== ks.length || sw.some((k, i) => k.k.code !== ks[i].k.code)) {
          problems.push(`${name}: kernels differ between the classes`);
        }
      }
    }
  }
  if (problems.length) throw new Error(problems.join("\n"));
  if (tiled < 100) throw new Error(`only ${tiled} tiled GEMMs generated`);
  if (big !== 2) throw new Error(`${big} GEMMs took the 128 x 128 tiles of a 48 KiB device`);
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
    for (const target of [SOFTWARE_TARGET, HW_SPEC]) {
      const n = kernelsFor(getOp(name), ins, attrs, target).length;
      if (n !== 2) {
        throw new Error(
          `${name} (${target.kernels}): expected 2 kernels (partial sums, then combine), got ${n}`,
        );
      }
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

Deno.test("a compiled training step: every dispatch passes the same checks, in both classes", () => {
  const { outputs, effects } = trainingStep();
  for (const kernels of ["software", "hardware"] as const) {
    const prog = lower(outputs, effects, { ...SPEC_LIMITS, kernels });
    if (prog.kernels !== kernels) throw new Error(`compiled for ${prog.kernels}, not ${kernels}`);
    const target = kernels === "hardware" ? HW_SPEC : SOFTWARE_TARGET;
    const problems = check(prog.steps.map((s) => ({ label: s.label, k: s.kernel })), target);
    if (problems.length) throw new Error(problems.join("\n"));
    const ops = new Set(prog.steps.map((s) => s.label.split("#")[0]));
    for (const want of ["conv2d_bwd_weight", "conv_transpose_bwd_data", "maxpool2d_bwd", "adam"]) {
      if (!ops.has(want)) throw new Error(`the training step has no ${want} dispatch`);
    }
    // The class reaches every GEMM dispatch (software: none uses workgroup memory).
    const staged = prog.steps.filter((s) => /var<workgroup>/.test(s.kernel.code));
    const gemms = new Set(
      prog.steps.filter((s) => GEMM_OPS.has(s.label.split("#")[0])).map((s) => s.label),
    );
    const stagedNodes = new Set(staged.map((s) => s.label));
    if (kernels === "software" ? staged.length : stagedNodes.size !== gemms.size) {
      throw new Error(`${kernels}: ${stagedNodes.size} of ${gemms.size} GEMM nodes are tiled`);
    }
    if (staged.some((s) => !GEMM_OPS.has(s.label.split("#")[0]))) {
      throw new Error("a non-GEMM dispatch uses workgroup memory");
    }
    // Compiling again gives the same program.
    const again = lower(outputs, effects, { ...SPEC_LIMITS, kernels });
    if (
      again.steps.length !== prog.steps.length ||
      again.steps.some((s, i) => s.kernel.code !== prog.steps[i].kernel.code)
    ) throw new Error(`${kernels}: compiling twice gave different programs`);
  }
  // No class given: the software class (compiling without a device: inspect, counts).
  if (lower(outputs, effects, SPEC_LIMITS).kernels !== "software") {
    throw new Error("the default class is not software");
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

Deno.test("the staging checker passes tiled GEMMs and rejects shared partial sums", () => {
  const conv = (target: KernelTarget) =>
    kernelsFor(
      getOp("conv2d"),
      [[2, 3, 9, 7], [5, 3, 3, 3], [5]],
      { stride: 1, padding: 1, dilation: 1 },
      target,
    )[0].k;
  const good = conv(HW_SPEC);
  if (kernelViolations(good, true).length) throw new Error(`${kernelViolations(good, true)}`);
  // Outside the hardware class the same kernel is refused (barriers, workgroup storage).
  if (kernelViolations(good).length < 2) throw new Error("a tiled kernel passed the strict rule");
  // A 48 KiB device's bigger tiles do not fit 16 KiB.
  const big = kernelsFor(getOp("matmul"), BIG_GEMMS[0].inputs, BIG_GEMMS[0].attrs!, HW_48K)[0].k;
  if (kernelViolations(big, true, 49152).length) throw new Error("128 x 128 tiles refused");
  if (!kernelViolations(big, true, 16384).some((m) => m.includes("bytes of workgroup memory"))) {
    throw new Error("workgroup memory beyond the limit was not rejected");
  }
  const edits: [string, (c: string) => string][] = [
    // An accumulator (a partial sum) shared through workgroup memory.
    ["shared accumulator", (c) => c.replace(/= ldA0;/, "= acc0_0;")],
    ["staged expression", (c) => c.replace(/= ldB0;/, "= ldB0 * 2.0;")],
    ["compound update", (c) => c.replace(/\] = ldB0;/, "] += ldB0;")],
    // A staged register computed from workgroup memory (other invocations' data).
    [
      "register from workgroup memory",
      (c) => c.replace(/ldA0 = select\(/, "ldA0 = tileB[0u].x + select("),
    ],
    [
      "scalar workgroup variable",
      (c) => c.replace(/var<workgroup> tileA: [^;]*;/, "var<workgroup> tileA: f32;"),
    ],
    ["large workgroup", (c) => c.replace(/@workgroup_size\(256\)/, "@workgroup_size(512)")],
    ["storageBarrier", (c) => c.replace("workgroupBarrier();", "storageBarrier();")],
  ];
  for (const [what, edit] of edits) {
    const code = edit(good.code);
    if (code === good.code) throw new Error(`${what}: the edit did not apply`);
    if (!kernelViolations({ ...good, code }, true).length) {
      throw new Error(`${what} was not rejected`);
    }
  }
});
