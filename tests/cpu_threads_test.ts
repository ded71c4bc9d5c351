/**
 * The CPU backend's helper threads (lib/backends/cpu/threads.ts) change no result:
 * - every kernel with `runPart` gives, over any number of parts run one after another, exactly
 *   the output of its `run` (awkward shapes, part counts that do not divide the work); likewise
 *   a kernel's `prepare` parts followed by `finish` (the conv panels), and adam's in-place update;
 * - a GEMM computed block by block (gemm_split.ts) equals the whole call on the BLAS in use;
 * - a training session with helper threads ends, step for step, with the same bits as one
 *   without, and its helpers really ran (a split was dispatched).
 */
import { getOp } from "../lib/graph/mod.ts";
import { cpuKernel } from "../lib/backends/cpu/lower.ts";
import type { Attrs } from "../lib/graph/graph.ts";
import type { Shape } from "../lib/graph/shape.ts";
import { type Backend, selectBackend } from "../lib/backends/select.ts";
import { CpuRuntime } from "../lib/backends/cpu/executor.ts";
import { Session } from "../lib/train/session.ts";
import { buildModel, type ModelFn } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { assert, assertEquals } from "./assert.ts";
import { sgemmArgs } from "../lib/backends/cpu/blas.ts";
import { sgemmTs } from "../lib/backends/cpu/gemm_ts.ts";
import { type GemmArgs, gemmParts, gemmSlice } from "../lib/backends/cpu/gemm_split.ts";

let seed = 1;
/** Deterministic values in [-2, 2), some exactly 0 (relu/max edges). */
function values(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    a[i] = i % 17 === 0 ? 0 : (seed / 2 ** 32) * 4 - 2;
  }
  return a;
}

interface SplitCase {
  op: string;
  ins: Shape[];
  attrs?: Attrs;
  /** Inputs that must be positive (variances). */
  positive?: number[];
}

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** Bitwise equality of two f32 arrays (NaN payloads and signed zeros included). */
function sameBits(a: Float32Array | undefined, b: Float32Array, what: string): void {
  assert(a !== undefined && a.length === b.length, `${what}: lengths differ`);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const i = x.findIndex((v, j) => v !== y[j]);
  assert(i < 0, `${what}: element ${i} differs (${a[i]} vs ${b[i]})`);
}

const CASES: SplitCase[] = [
  { op: "add", ins: [[3, 5, 7, 9], [3, 5, 7, 9]] },
  { op: "add", ins: [[3, 5, 7, 9], [1, 5, 1, 1]] },
  { op: "mul", ins: [[2, 7, 1, 11], [2, 1, 13, 1]] },
  { op: "relu", ins: [[5, 3, 17]] },
  { op: "relu_grad", ins: [[4, 33], [4, 33]] },
  { op: "expand", ins: [[1, 3, 1, 5]], attrs: { shape: [2, 3, 4, 5] } },
  { op: "expand", ins: [[6, 7]], attrs: { shape: [6, 7] } },
  { op: "gelu", ins: [[1001]] },
  { op: "gelu_grad", ins: [[3, 111], [3, 111]] },
  { op: "dropout", ins: [[1003], [1]], attrs: { p: 0.3, seed: 9 } },
  { op: "bn_stats", ins: [[3, 7, 5, 6]] },
  { op: "bn_apply", ins: [[3, 7, 5, 6], [2, 7], [7], [7]], attrs: { eps: 1e-5 }, positive: [1] },
  {
    op: "bn_apply",
    ins: [[2, 5, 3, 9], [2, 5], [5], [5]],
    attrs: { eps: 1e-5, relu: true },
    positive: [1],
  },
  {
    op: "bn_bwd_sums",
    ins: [[2, 5, 3, 9], [2, 5], [2, 5, 3, 9], [2, 5, 3, 9]],
    attrs: { eps: 1e-5, relu: true },
    positive: [1],
  },
  {
    op: "bn_bwd_data",
    ins: [[3, 4, 5, 7], [2, 4], [4], [3, 4, 5, 7], [2, 4]],
    attrs: { eps: 1e-5 },
    positive: [1],
  },
  { op: "softmax", ins: [[7, 13]] },
  { op: "sum", ins: [[3, 5, 4, 9]], attrs: { axes: [0, 2, 3] } },
  { op: "sum", ins: [[3, 5, 70]], attrs: { axes: [1] } },
  { op: "sum", ins: [[6, 5, 7]], attrs: { axes: [2] } },
  { op: "softmax_grad", ins: [[5, 9], [5, 9]] },
  { op: "max_axis", ins: [[2, 5, 3, 7]], attrs: { axis: 1 } },
  { op: "max_axis_grad", ins: [[2, 5, 3, 7], [2, 1, 3, 7]], attrs: { axis: 1 } },
  { op: "maxpool2d", ins: [[2, 3, 8, 6]], attrs: { k: 2, s: 2 } },
  { op: "maxpool2d", ins: [[1, 5, 9, 7]], attrs: { k: 3, s: 2 } },
  { op: "maxpool2d_bwd", ins: [[2, 3, 8, 6], [2, 3, 4, 3]], attrs: { k: 2, s: 2 } },
  { op: "maxpool2d_bwd", ins: [[1, 5, 9, 7], [1, 5, 4, 3]], attrs: { k: 3, s: 2 } },
  { op: "pool_sum", ins: [[2, 3, 8, 6]], attrs: { f: 2 } },
  { op: "upsample_nearest", ins: [[2, 3, 4, 3]], attrs: { f: 2 } },
];

for (const c of CASES) {
  Deno.test(`cpu runPart: ${c.op} ${JSON.stringify(c.ins)} equals run for 1-5 parts`, () => {
    const def = getOp(c.op);
    const attrs = c.attrs ?? {};
    const outShape = def.shape(c.ins, attrs);
    const k = cpuKernel(def, c.ins, attrs, outShape);
    assert(k.runPart !== undefined, `${c.op} has runPart`);
    const ins = c.ins.map((s, i) => {
      const v = values(size(s));
      if (c.positive?.includes(i)) v.forEach((x, j) => (v[j] = Math.abs(x) + 0.1));
      if (c.op === "dropout" && i === 1) v[0] = 7; // the step counter
      return v;
    });
    const scratch = () => (k.scratch ?? []).map((n) => new Float32Array(n).fill(NaN));
    const want = new Float32Array(size(outShape));
    k.run(ins, want, scratch());
    for (const parts of [1, 2, 3, 5]) {
      const got = new Float32Array(want.length).fill(NaN);
      const s = scratch();
      for (let p = 0; p < parts; p++) k.runPart!(ins, got, s, p, parts);
      sameBits(got, want, `${parts} parts`);
    }
  });
}

Deno.test("cpu runPart: adam's in-place update over chunks equals run for 1-3 parts", () => {
  const n = 3 * 4096 + 17;
  const inputs = () => {
    const h = new Float32Array([1e-3, 0.1, 0.001]);
    return [values(n), values(n), values(n), values(n).map(Math.abs), h];
  };
  const k = cpuKernel(getOp("adam"), [[n], [n], [n], [n], [3]], {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    decoupled: false,
  }, [0]);
  assert(k.runPart !== undefined, "adam has runPart");
  seed = 3;
  const want = inputs();
  k.run(want, new Float32Array(0), []);
  for (const parts of [1, 2, 3]) {
    seed = 3;
    const got = inputs();
    for (let p = 0; p < parts; p++) k.runPart!(got, new Float32Array(0), [], p, parts);
    for (const i of [0, 2, 3]) sameBits(got[i], want[i], `${parts} parts, input ${i}`);
  }
});

/** Stride-1 convs that keep the width: the ones with a `prepare` stage (conv panels). */
const STAGED: { op: string; ins: Shape[]; attrs: Attrs }[] = [
  {
    op: "conv2d",
    ins: [[3, 5, 7, 9], [4, 5, 3, 3], [4]],
    attrs: { stride: 1, padding: 1, dilation: 1 },
  },
  {
    op: "conv2d",
    ins: [[2, 3, 8, 6], [5, 3, 3, 3]],
    attrs: { stride: 1, padding: 2, dilation: 2 },
  },
  {
    op: "conv2d_bwd_data",
    ins: [[3, 4, 7, 9], [4, 5, 3, 3]],
    attrs: { stride: 1, padding: 1, dilation: 1, inShape: [3, 5, 7, 9] },
  },
  {
    op: "conv2d_bwd_weight",
    ins: [[3, 5, 7, 9], [3, 4, 7, 9]],
    attrs: { stride: 1, padding: 1, dilation: 1, wShape: [4, 5, 3, 3] },
  },
];

for (const c of STAGED) {
  Deno.test(`cpu prepare + finish: ${c.op} ${JSON.stringify(c.ins)} equals run for 1-4 parts`, () => {
    const def = getOp(c.op);
    const outShape = def.shape(c.ins, c.attrs);
    const k = cpuKernel(def, c.ins, c.attrs, outShape);
    assert(k.prepare !== undefined && k.finish !== undefined, `${c.op} has a prepare stage`);
    const ins = c.ins.map((s) => values(size(s)));
    const scratch = () => (k.scratch ?? []).map((n) => new Float32Array(n).fill(NaN));
    const want = new Float32Array(size(outShape));
    k.run(ins, want, scratch());
    for (const parts of [1, 2, 3, 4]) {
      const got = new Float32Array(want.length).fill(NaN);
      const s = scratch();
      for (let p = 0; p < parts; p++) k.prepare!(ins, got, s, p, parts);
      k.finish!(ins, got, s);
      sameBits(got, want, `${parts} parts`);
    }
  });
}

type Gemm = (g: GemmArgs) => void;

const tsGemm: Gemm = (g) =>
  sgemmTs(g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.B, g.ldb, g.beta, g.C, g.ldc);

/** Max |difference| between `gemm` on the whole of each case and `gemm` on 2 and 3 blocks. */
function blockError(gemm: Gemm): number {
  const shapes: [boolean, boolean, number, number, number][] = [
    [false, false, 200, 70, 33],
    [false, true, 70, 300, 129],
    [true, false, 257, 65, 97],
    [true, true, 130, 131, 64],
    [false, true, 384, 64, 1000],
  ];
  let worst = 0;
  for (const [ta, tb, M, N, K] of shapes) {
    const lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    const A = values((ta ? K : M) * lda), B = values((tb ? N : K) * ldb);
    const C0 = values(M * ldc);
    const g: GemmArgs = {
      transA: ta,
      transB: tb,
      M,
      N,
      K,
      alpha: 1,
      A,
      lda,
      B,
      ldb,
      beta: 0.5,
      C: C0.slice(),
      ldc,
    };
    gemm(g);
    for (const parts of [2, 3]) {
      const C = C0.slice();
      for (let p = 0; p < parts; p++) {
        gemm(gemmSlice({ ...g, C }, p, parts));
      }
      C.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - g.C[i]))));
      if (gemm === tsGemm) sameBits(C, g.C, `TS ${M}x${N}x${K} in ${parts} blocks`);
    }
  }
  return worst;
}

Deno.test("cpu threads: a GEMM computed in blocks equals the whole call", () => {
  // The TypeScript GEMM: bitwise (checked inside). The BLAS in use: to rounding; bitwise where
  // its kernels keep each element's sum order whatever the block (OpenBLAS's AVX-512 kernels
  // do, its Haswell kernels do not; README "Determinism").
  blockError(tsGemm);
  const err = blockError(sgemmArgs);
  assert(err < 1e-3, `blocks differ from the whole call by ${err}`);
});

Deno.test("cpu threads: GEMM blocks tile C on multiples of 64, none small enough for a small-matrix kernel", () => {
  // OpenBLAS's SkylakeX kernels sum GEMMs of at most 100^3 multiply-adds in another order than
  // larger ones (gemm_split.ts), so no block may be that small unless the whole call is.
  let split = 0;
  for (const M of [1, 63, 64, 128, 129, 200, 257, 1000, 3136]) {
    for (const N of [1, 4, 64, 65, 300, 768]) {
      for (const K of [1, 9, 64, 576, 2304]) {
        for (const threads of [1, 2, 3, 4, 7, 16]) {
          const parts = gemmParts(M, N, K, threads);
          assert(parts >= 1 && parts <= threads, `${M}x${N}x${K} on ${threads}: ${parts} parts`);
          if (parts > 1) split++;
          const C = new Float32Array(M * N);
          const g = { transA: false, transB: false, M, N, K, alpha: 1, beta: 0, C, ldc: N };
          const whole: GemmArgs = { ...g, A: C, lda: K, B: C, ldb: N };
          let covered = 0;
          for (let p = 0; p < parts; p++) {
            const b = gemmSlice(whole, p, parts);
            // Where the block starts: its first row (rows split) or column (columns split).
            const at = M >= N ? b.C.byteOffset / 4 / N : b.C.byteOffset / 4;
            assert(parts === 1 || b.M * b.N * K > 100 ** 3, `${M}x${N}x${K}: block ${p} too small`);
            assert(at === covered, `${M}x${N}x${K}: block ${p} starts at ${at}, not ${covered}`);
            assert(at % 64 === 0, `${M}x${N}x${K}: block ${p} starts at ${at}`);
            covered += M >= N ? b.M : b.N;
          }
          assertEquals(covered, M >= N ? M : N);
        }
      }
    }
  }
  assert(split > 100, `some GEMMs were split: ${split}`);
  // The shape that split across the SkylakeX threshold in LViT-T's backward runs whole.
  assertEquals(gemmParts(128, 4, 2304, 2), 1);
  assertEquals(gemmParts(256, 4, 2304, 2), 2);
});

/** A CPU backend whose runtimes have `threads` threads in all. */
async function cpuWith(threads: number): Promise<Backend> {
  const b = await selectBackend("cpu", true);
  return {
    ...b,
    runtime: () => Object.assign(new CpuRuntime({ threads }), { sync: () => Promise.resolve() }),
  };
}

/** A model of the thread test: LViT-T, and GT U-Net for the batched convs of its 4x4 windows. */
interface ThreadCase {
  name: string;
  model: ModelFn;
  size: number;
  extra: Record<string, Float32Array>;
}

const THREAD_CASES: ThreadCase[] = [
  // Base 16 at 128x128: the largest GEMMs (~25 MFLOP) are split into blocks too.
  {
    name: "LViT-T",
    model: buildModel("lvit-t", { baseChannels: 16, imageSize: 128, textTokens: 4 }),
    size: 128,
    extra: { [TEXT_INPUT]: values(2 * 4 * 768) },
  },
  // 512 windows of 4x4 at the first level: the convs there run batched (kernels/cpu/conv.ts).
  {
    name: "GT U-Net",
    model: buildModel("gtunet", { baseChannels: 16, imageSize: 64 }),
    size: 64,
    extra: {},
  },
];

for (const c of THREAD_CASES) {
  Deno.test(`cpu threads: a ${c.name} training session gives the same bits on 2 threads twice, and on 1 where BLAS blocks are exact`, async () => {
    const B = 2, S = c.size;
    const d = blobSet(3, 0, B, S);
    const results: Map<string, Float32Array>[] = [];
    for (const threads of [2, 2, 1]) {
      const s = await Session.create(await cpuWith(threads), c.model, {
        batch: B,
        channels: 3,
        height: S,
        width: S,
        seed: 5,
      });
      try {
        const rt = s.rt as unknown as CpuRuntime;
        assert((rt.threads === null) === (threads === 1), "helpers start when asked for");
        for (let i = 0; i < 3; i++) s.step(d.images, d.masks, 1e-3, c.extra);
        const p = await s.predict(d.images, c.extra);
        if (rt.threads) {
          assert(rt.threads.splits > 100, `steps ran in parts: ${rt.threads.splits}`);
          if (rt.threads.splitsGemms) {
            assert(rt.threads.gemmSplits > 10, `GEMMs ran in blocks: ${rt.threads.gemmSplits}`);
          }
        }
        const state = await s.parameters();
        state.set("__predictions", p);
        results.push(state);
      } finally {
        s.destroy();
      }
    }
    assertEquals([...results[1].keys()], [...results[0].keys()]);
    for (const [name, v] of results[0]) sameBits(results[1].get(name), v, name);
    // One thread (whole GEMMs) against two (GEMMs in blocks): the same bits where the BLAS
    // kernels give blocks the whole call's bits, else the same training up to rounding: an Adam
    // step of lr 1e-3 moves a weight by at most ~1e-3, so 3 steps that went opposite ways differ
    // by 6e-3.
    const exact = blockError(sgemmArgs) === 0;
    for (const [name, v] of results[0]) {
      const w = results[2].get(name)!;
      if (exact) sameBits(w, v, `${name}, 1 thread`);
      else {
        const worst = v.reduce((m, x, i) => Math.max(m, Math.abs(x - w[i])), 0);
        assert(
          worst < 6e-3 || name === "__predictions",
          `${name}: 1 and 2 threads differ by ${worst}`,
        );
      }
    }
  });
}
