/**
 * The CPU backend's helper threads (lib/backends/cpu/threads.ts) change no result:
 * - every kernel with `runPart` gives, over any number of parts run one after another, exactly
 *   the output of its `run` (awkward shapes, part counts that do not divide the work);
 * - a training session with helper threads ends, step for step, with the same bits as one
 *   without, and its helpers really ran (a split was dispatched).
 */
import { getOp } from "../lib/graph/mod.ts";
import type { Attrs } from "../lib/graph/graph.ts";
import type { Shape } from "../lib/graph/shape.ts";
import { type Backend, selectBackend } from "../lib/backends/select.ts";
import { CpuRuntime } from "../lib/backends/cpu/executor.ts";
import { Session } from "../lib/train/session.ts";
import { buildModel } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { assert, assertEquals } from "./assert.ts";

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
];

for (const c of CASES) {
  Deno.test(`cpu runPart: ${c.op} ${JSON.stringify(c.ins)} equals run for 1-5 parts`, () => {
    const def = getOp(c.op);
    const attrs = c.attrs ?? {};
    const outShape = def.shape(c.ins, attrs);
    const k = def.cpu!(c.ins, attrs, outShape);
    assert(k.runPart !== undefined, `${c.op} has runPart`);
    const ins = c.ins.map((s, i) => {
      const v = values(size(s));
      if (c.positive?.includes(i)) v.forEach((x, j) => (v[j] = Math.abs(x) + 0.1));
      if (c.op === "dropout" && i === 1) v[0] = 7; // the step counter
      return v;
    });
    const want = new Float32Array(size(outShape));
    k.run(ins, want, []);
    for (const parts of [1, 2, 3, 5]) {
      const got = new Float32Array(want.length).fill(NaN);
      for (let p = 0; p < parts; p++) k.runPart!(ins, got, [], p, parts);
      sameBits(got, want, `${parts} parts`);
    }
  });
}

/** A CPU backend whose runtimes have `threads` threads in all. */
async function cpuWith(threads: number): Promise<Backend> {
  const b = await selectBackend("cpu", true);
  return {
    ...b,
    runtime: () => Object.assign(new CpuRuntime({ threads }), { sync: () => Promise.resolve() }),
  };
}

Deno.test("cpu threads: a LViT-T training session gives the same bits with 1 and 2 threads", async () => {
  const model = buildModel("lvit-t", { baseChannels: 8, imageSize: 64, textTokens: 4 });
  const B = 2, S = 64;
  const d = blobSet(3, 0, B, S);
  const text = values(B * 4 * 768);
  const results: Map<string, Float32Array>[] = [];
  for (const threads of [1, 2]) {
    const s = await Session.create(await cpuWith(threads), model, {
      batch: B,
      channels: 3,
      height: S,
      width: S,
      seed: 5,
    });
    try {
      const rt = s.rt as unknown as CpuRuntime;
      assert((rt.threads === null) === (threads === 1), "helpers start when asked for");
      for (let i = 0; i < 3; i++) s.step(d.images, d.masks, 1e-3, { [TEXT_INPUT]: text });
      const p = await s.predict(d.images, { [TEXT_INPUT]: text });
      if (rt.threads) assert(rt.threads.splits > 100, `steps ran in parts: ${rt.threads.splits}`);
      const state = await s.parameters();
      state.set("__predictions", p);
      results.push(state);
    } finally {
      s.destroy();
    }
  }
  assertEquals([...results[1].keys()], [...results[0].keys()]);
  for (const [name, v] of results[0]) sameBits(results[1].get(name), v, name);
});
