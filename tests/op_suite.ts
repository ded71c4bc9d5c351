/**
 * Registration and coverage bookkeeping shared by the op test files: each case runs on WebGPU,
 * on the CPU and (when differentiable) by finite differences, and the file's last test checks
 * that every op it owns (tests/op_coverage.ts) was exercised each way. Suites created with
 * `{ hardware: true }` also run every case that contains a GEMM (the conv family, matmul) on
 * WebGPU with the hardware kernel class forced (workgroup-memory tiled GEMMs, which CI can check
 * on a software adapter only this way).
 */
import { allOps, getOp, Graph, type Tensor } from "../lib/graph/mod.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { cpuLowerings } from "../lib/backends/cpu/lower.ts";
import { OP_OWNERS } from "./op_coverage.ts";
import { buildCase, checkOp, fdCheck, noGpu, type OpCase, randn } from "./harness.ts";
import type { Shape } from "../lib/graph/mod.ts";

type Where = "webgpu" | "cpu";

/** The ops whose WebGPU kernels are implicit GEMMs, generated per kernel class (gemm.ts). */
export const GEMM_OPS: ReadonlySet<string> = new Set([
  "conv2d",
  "conv2d_bwd_data",
  "conv2d_bwd_weight",
  "conv_transpose",
  "conv_transpose_bwd_data",
  "conv_transpose_bwd_weight",
  "matmul",
]);
type Tol = { atol: number; rtol: number };

export interface SuiteCase extends OpCase {
  /** Finite differences: false to skip (ties, or large shapes covered by a small case). */
  fd?: false | { eps?: number; tol?: number };
}

/** One group of sample cases sharing a tolerance (the reason is given next to it in the table). */
export interface SampleGroup {
  group: string;
  tol: Tol;
  samples: SuiteCase[];
}

/** Input shapes and attributes of one op node, for checks that need no values (kernels_static). */
export interface StaticSample {
  op: string;
  inputs: Shape[];
  attrs?: Record<string, unknown>;
}

/**
 * The sample inputs of one op family (tests/op_info/<family>.ts), in the manner of PyTorch's
 * OpInfo: `groups` are run by the family's driver (tests/<family>_ops_test.ts) on WebGPU, on the
 * CPU and by finite differences; every op node of every sample, forward and backward, plus
 * `static` (effect ops, shapes too large to run), feeds tests/kernels_static_test.ts.
 */
export interface OpTable {
  family: string;
  groups: SampleGroup[];
  static?: StaticSample[];
}

/**
 * Elementwise-kernel shapes with nothing to run: equal shapes, per-channel broadcasts, and a
 * grid of more than 65535 workgroups (folded into 2-D) with a broadcast last input.
 */
export function elementwiseStatic(op: string, attrs: Record<string, unknown> = {}): StaticSample[] {
  const n = getOp(op).arity ?? 2;
  return [
    { op, inputs: Array.from({ length: n }, () => [3, 5]), attrs },
    {
      op,
      inputs: Array.from({ length: n }, (_, i) => (i === 0 ? [2, 3, 5, 7] : [3, 1, 1])),
      attrs,
    },
    {
      op,
      inputs: Array.from({ length: n }, (_, i) => (i === n - 1 ? [1] : [64 * 65535 + 1])),
      attrs,
    },
  ];
}

/** Collects `cases(group, tol, samples)` calls of a table file into its groups. */
export function tableBuilder(): {
  groups: SampleGroup[];
  cases: (group: string, tol: Tol, samples: SuiteCase[]) => void;
} {
  const groups: SampleGroup[] = [];
  return { groups, cases: (group, tol, samples) => void groups.push({ group, tol, samples }) };
}

export class OpSuite {
  /** Ops in the forward part of a case run on a backend. */
  readonly forward = { webgpu: new Set<string>(), cpu: new Set<string>() };
  /** Ops in the forward part of a case whose backward was compared too. */
  readonly backward = { webgpu: new Set<string>(), cpu: new Set<string>() };
  /** Ops that autodiff put into the backward graph of a case run on a backend. */
  readonly inBackward = { webgpu: new Set<string>(), cpu: new Set<string>() };
  /** Ops in the forward part of a finite-difference case. */
  readonly fdForward = new Set<string>();
  /** Effect ops (in-place updates) run on a backend against the reference. */
  readonly effects = { webgpu: new Set<string>(), cpu: new Set<string>() };
  /**
   * Ops run with the hardware kernel class: in a case's forward, and in the forward of a case
   * whose backward was compared too.
   */
  readonly hardware = { forward: new Set<string>(), backward: new Set<string>() };

  constructor(readonly owner: string, readonly opts: { hardware?: boolean } = {}) {}

  record = (c: OpCase, where: Where | "fd" | "hardware"): void => {
    const cg = buildCase(c);
    for (const t of cg.g.nodes) {
      if (t.kind !== "node") continue;
      if (where === "hardware") {
        if (t.id <= cg.y.id) {
          this.hardware.forward.add(t.op);
          if (!c.forwardOnly) this.hardware.backward.add(t.op);
        }
      } else if (t.id <= cg.y.id) {
        if (where === "fd") this.fdForward.add(t.op);
        else {
          this.forward[where].add(t.op);
          if (!c.forwardOnly) this.backward[where].add(t.op);
        }
      } else if (where !== "fd" && t.id > cg.loss.id) this.inBackward[where].add(t.op);
    }
  };

  /** Whether a case's graph, forward or backward, contains a GEMM op. */
  private hasGemm(c: OpCase): boolean {
    const cg = buildCase(c);
    return cg.g.nodes.some((t) => t.kind === "node" && GEMM_OPS.has(t.op));
  }

  /** Registers every group of a family's sample table (see `cases`). */
  table = (t: OpTable): void => {
    for (const g of t.groups) this.cases(g.group, g.tol, g.samples);
  };

  /** Registers a WebGPU, a CPU and (unless forwardOnly or fd: false) a finite-difference test. */
  cases = (group: string, tol: Tol, list: SuiteCase[]): void => {
    for (const c0 of list) {
      const c: SuiteCase = { atol: tol.atol, rtol: tol.rtol, ...c0, name: `${group}: ${c0.name}` };
      Deno.test({
        name: `${c.name} [webgpu]`,
        ignore: noGpu,
        fn: async () => {
          this.record(c, "webgpu");
          await checkOp(c, "webgpu");
        },
      });
      if (this.opts.hardware && this.hasGemm(c)) {
        Deno.test({
          name: `${c.name} [webgpu hardware]`,
          ignore: noGpu,
          fn: async () => {
            this.record(c, "hardware");
            await checkOp(c, "webgpu", "hardware");
          },
        });
      }
      Deno.test(`${c.name} [cpu]`, async () => {
        this.record(c, "cpu");
        await checkOp(c, "cpu");
      });
      if (!c.forwardOnly && c.fd !== false) {
        const fd = c.fd ?? {};
        Deno.test(`${c.name} [fd]`, () => {
          this.record(c, "fd");
          fdCheck(c, fd.eps, fd.tol);
        });
      }
    }
  };

  /**
   * Registers the coverage test; call it last in the file. `viaAutodiff` names ops that must
   * also have been reached inside a backward graph on each backend.
   */
  coverageTest(viaAutodiff: string[]): void {
    Deno.test("coverage: every op this file owns (tests/op_coverage.ts) is tested here", () => {
      const mine = new Set(OP_OWNERS[this.owner]);
      const ops = allOps().filter((o) => mine.has(o.name));
      if (ops.length !== mine.size) throw new Error("an op owned by this file is not in the table");
      const missing: string[] = [];
      const targets: Where[] = noGpu ? ["cpu"] : ["webgpu", "cpu"];
      for (const op of ops) {
        if (!op.alias && !cpuLowerings.has(op)) missing.push(`${op.name} (no cpu kernel)`);
        if (op.inplace) {
          for (const w of targets) {
            if (!this.effects[w].has(op.name)) missing.push(`${op.name} (${w} effect)`);
          }
          continue;
        }
        if (op.grad && !this.fdForward.has(op.name)) {
          missing.push(`${op.name} (finite differences)`);
        }
        for (const w of targets) {
          if (!this.forward[w].has(op.name)) missing.push(`${op.name} (${w} forward)`);
          if (op.grad && !this.backward[w].has(op.name)) missing.push(`${op.name} (${w} backward)`);
        }
      }
      for (const name of viaAutodiff) {
        for (const w of targets) {
          if (!this.inBackward[w].has(name)) missing.push(`${name} (inside a ${w} backward)`);
        }
      }
      // The hardware kernel class: every GEMM op this file owns, forward and backward.
      if (this.opts.hardware && !noGpu) {
        for (const op of ops) {
          if (!GEMM_OPS.has(op.name)) continue;
          if (!this.hardware.forward.has(op.name)) {
            missing.push(`${op.name} (webgpu hardware forward)`);
          }
          if (op.grad && !this.hardware.backward.has(op.name)) {
            missing.push(`${op.name} (webgpu hardware backward)`);
          }
        }
      }
      if (missing.length) throw new Error(`untested ops: ${missing.join(", ")}`);
    });
  }
}

/** One input of a case. */
export type Spec = OpCase["inputs"][string];
/** An input of this shape with seeded normal values. */
export const T = (...shape: number[]): Spec => ({ shape });
export const numelOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
/** An input with the given values. */
export const given = (shape: number[], values: number[]): Spec => ({
  shape,
  values: Float64Array.from(values),
});

/** Leaf values rounded to f32 (what a backend stores), as a fresh map. */
export const copyLeaves = (m: Map<string, Float64Array>) =>
  new Map([...m].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))]));

/**
 * The float64 reference of `build` on seeded normal inputs, for the tests that check the
 * structured ops' references against independent loops written from the PyTorch definitions.
 */
export function refRun(
  inputs: Record<string, number[]>,
  build: (x: Record<string, Tensor>) => Tensor,
  seed: number,
) {
  const g = new Graph();
  const xs: Record<string, Tensor> = {};
  const leaves = new Map<string, Float64Array>();
  Object.entries(inputs).forEach(([k, shape], i) => {
    xs[k] = g.input(k, shape);
    leaves.set(k, randn(numelOf(shape), seed + i));
  });
  const y = build(xs);
  return { y: runRef({ y }, leaves).y, v: leaves, shape: y.shape };
}
/** Row-major index into a 4-D array. */
export const at4 = (s: readonly number[], a: number, b: number, c: number, d: number) =>
  ((a * s[1] + b) * s[2] + c) * s[3] + d;
