/**
 * Registration and coverage bookkeeping shared by the op test files: each case runs on WebGPU,
 * on the CPU and (when differentiable) by finite differences, and the file's last test checks
 * that every op it owns (tests/op_coverage.ts) was exercised each way.
 */
import { allOps } from "../lib/graph/mod.ts";
import { cpuLowerings } from "../lib/backends/cpu/lower.ts";
import { OP_OWNERS } from "./op_coverage.ts";
import { buildCase, checkOp, fdCheck, noGpu, type OpCase } from "./harness.ts";

type Where = "webgpu" | "cpu";

export interface SuiteCase extends OpCase {
  /** Finite differences: false to skip (ties, or large shapes covered by a small case). */
  fd?: false | { eps?: number; tol?: number };
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

  constructor(readonly owner: string) {}

  record = (c: OpCase, where: Where | "fd"): void => {
    const cg = buildCase(c);
    for (const t of cg.g.nodes) {
      if (t.kind !== "node") continue;
      if (t.id <= cg.y.id) {
        if (where === "fd") this.fdForward.add(t.op);
        else {
          this.forward[where].add(t.op);
          if (!c.forwardOnly) this.backward[where].add(t.op);
        }
      } else if (where !== "fd" && t.id > cg.loss.id) this.inBackward[where].add(t.op);
    }
  };

  /** Registers a WebGPU, a CPU and (unless forwardOnly or fd: false) a finite-difference test. */
  cases = (group: string, tol: { atol: number; rtol: number }, list: SuiteCase[]): void => {
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
        if (!cpuLowerings.has(op)) missing.push(`${op.name} (no cpu kernel)`);
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
