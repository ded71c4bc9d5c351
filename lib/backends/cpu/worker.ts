/**
 * A helper thread of the CPU backend (threads.ts): it rebuilds each shared program's kernels
 * from their (op, shapes, attributes) with the same op table, and runs the parts of split steps
 * it is handed through the shared control block, on the program's shared buffers.
 */
import { parentPort, workerData } from "node:worker_threads";
import { getOp } from "../../graph/mod.ts";
import type { CpuKernel } from "../../../kernels/cpu/types.ts";
import { cpuKernel } from "./lower.ts";
import { CTRL, gemmScalars, type ProgramShare, SPINS } from "./threads.ts";
import { sgemmArgs } from "./blas.ts";
import { gemmSlice } from "./gemm_split.ts";

interface Views {
  ins: Float32Array[];
  out: Float32Array;
  scratch: Float32Array[];
}

interface Held {
  share: ProgramShare;
  kernels: (CpuKernel | undefined)[];
  views: Views[];
}

const { ctrl, error } = workerData as { ctrl: Int32Array; error: Uint8Array };
const programs = new Map<number, Held>();

function hold(p: ProgramShare): Held {
  const view = (r: { buffer: number; size: number }) =>
    r.buffer < 0 ? new Float32Array(0) : new Float32Array(p.buffers[r.buffer], 0, r.size);
  return {
    share: p,
    kernels: [],
    views: p.steps.map((s) => ({
      ins: s.ins.map(view),
      out: view(s.out),
      scratch: s.scratch.map(view),
    })),
  };
}

parentPort!.on("message", (m: { program?: ProgramShare }) => {
  if (!m.program) return;
  programs.set(m.program.id, hold(m.program));
  parentPort!.postMessage({ registered: m.program.id });
});

const floats = gemmScalars(ctrl);

/** This thread's block of the GEMM described in the control block (threads.ts). */
function runGemm(held: Held): void {
  const a = Array.from(ctrl.subarray(CTRL.GEMM, CTRL.GEMM + 17));
  const view = (k: number) => new Float32Array(held.share.buffers[a[k]], a[k + 1] * 4, a[k + 2]);
  const s = gemmSlice(
    {
      transA: a[0] === 1,
      transB: a[1] === 1,
      M: a[2],
      N: a[3],
      K: a[4],
      lda: a[5],
      ldb: a[6],
      ldc: a[7],
      A: view(8),
      B: view(11),
      C: view(14),
      alpha: floats[0],
      beta: floats[1],
    },
    ctrl[CTRL.PART],
    ctrl[CTRL.PARTS],
  );
  sgemmArgs(s);
}

function runTask(): void {
  const held = programs.get(ctrl[CTRL.PROGRAM]);
  const i = ctrl[CTRL.STEP];
  if (!held) throw new Error(`program ${ctrl[CTRL.PROGRAM]} was not shared with this thread`);
  if (ctrl[CTRL.TASK] === CTRL.TASK_GEMM) return runGemm(held);
  let k = held.kernels[i];
  if (!k) {
    const n = held.share.steps[i].node;
    k = cpuKernel(getOp(n.op), n.inShapes, n.attrs, n.outShape);
    held.kernels[i] = k;
  }
  const v = held.views[i];
  if (ctrl[CTRL.TASK] === CTRL.TASK_PREPARE) {
    if (!k.prepare) throw new Error(`${n(held, i)} has no prepare stage`);
    k.prepare(v.ins, v.out, v.scratch, ctrl[CTRL.PART], ctrl[CTRL.PARTS]);
    return;
  }
  if (!k.runPart) throw new Error(`${n(held, i)} cannot run in parts`);
  k.runPart(v.ins, v.out, v.scratch, ctrl[CTRL.PART], ctrl[CTRL.PARTS]);
}

const n = (h: Held, i: number) => `${h.share.steps[i].node.op} (step ${i})`;

/** Lets the event loop deliver messages (new programs) and termination. */
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function loop(): Promise<never> {
  let last = Atomics.load(ctrl, CTRL.SEQ);
  for (;;) {
    const seq = Atomics.load(ctrl, CTRL.SEQ);
    if (seq !== last) {
      last = seq;
      try {
        runTask();
      } catch (e) {
        const text = new TextEncoder().encode(String((e as Error)?.message ?? e));
        error.fill(0);
        error.set(text.subarray(0, CTRL.ERROR_BYTES - 1));
        Atomics.store(ctrl, CTRL.FAILED, 1);
      }
      Atomics.store(ctrl, CTRL.DONE, seq);
      Atomics.notify(ctrl, CTRL.DONE);
      continue;
    }
    if (Atomics.load(ctrl, CTRL.MAIL)) {
      Atomics.store(ctrl, CTRL.MAIL, 0);
      await tick();
      continue;
    }
    let spins = 0;
    while (spins < SPINS && Atomics.load(ctrl, CTRL.SEQ) === last) spins++;
    if (spins < SPINS) continue;
    if (Atomics.wait(ctrl, CTRL.SEQ, last, 200) === "timed-out") await tick();
  }
}

loop();
