/**
 * The WebGPU kernel classes (issue 13, adapter classes): `software` (register-blocked GEMMs) and
 * `hardware` (GEMMs tiled through workgroup memory, kernels/webgpu/gemm.ts), chosen by adapter
 * or by LVIT_WEBGPU_KERNELS. The op tests (tests/conv_ops_test.ts, tests/transformer_ops_test.ts)
 * run every GEMM sample in both classes against the float64 reference; this file checks the
 * choice itself, that it reaches the compiled program, that a hardware-class program is bitwise
 * deterministic, and the 128 x 128 tiles that only big GEMMs on a device with more than 16 KiB of
 * workgroup memory get (lavapipe offers 32 KiB).
 */
import { conv2d, convTranspose, gradients, Graph, matmul, mul, sum } from "../lib/graph/mod.ts";
import { kernelClass, KERNELS_ENV } from "../lib/backends/webgpu/device.ts";
import { compile } from "../lib/backends/compile.ts";
import { InputError } from "../lib/config/errors.ts";
import { checkOp, gpu, gpuLimits, noGpu, randn, runOn } from "./harness.ts";
import { GEMM_OPS, T } from "./op_suite.ts";
import type { KernelClass } from "../kernels/webgpu/types.ts";

Deno.test("LVIT_WEBGPU_KERNELS: unset chooses by adapter, software|hardware force, else refused", () => {
  const want = (got: ReturnType<typeof kernelClass>, kernels: KernelClass, forced: boolean) => {
    if (got.kernels !== kernels || got.forced !== forced) {
      throw new Error(`got ${JSON.stringify(got)}, want ${kernels} forced ${forced}`);
    }
  };
  want(kernelClass(true, undefined), "software", false);
  want(kernelClass(false, undefined), "hardware", false);
  want(kernelClass(false, ""), "hardware", false);
  want(kernelClass(false, "software"), "software", true);
  want(kernelClass(true, "hardware"), "hardware", true);
  for (const bad of ["Hardware", "gpu", "auto", " software", "tiled"]) {
    try {
      kernelClass(true, bad);
    } catch (e) {
      const m = (e as Error).message;
      if (!(e instanceof InputError) || !m.includes(KERNELS_ENV) || !m.includes("'hardware'")) {
        throw new Error(`'${bad}' refused with an unclear error: ${m}`);
      }
      continue;
    }
    throw new Error(`'${bad}' was accepted`);
  }
});

/** Runs a script in a fresh process with LVIT_WEBGPU_KERNELS set; returns exit code and output. */
async function withEnv(value: string, script: string): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-webgpu", script],
    env: { XDG_RUNTIME_DIR: "/tmp", [KERNELS_ENV]: value },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, text: d.decode(out.stdout) + d.decode(out.stderr) };
}

const SELECT = new URL("../lib/backends/select.ts", import.meta.url).href;

Deno.test({
  name: "LVIT_WEBGPU_KERNELS reaches the device's programs; a bad value stops backend selection",
  ignore: noGpu,
  fn: async () => {
    const script = `
      import { selectBackend } from "${SELECT}";
      import { compile } from "${new URL("../lib/backends/compile.ts", import.meta.url).href}";
      import { Graph, matmul } from "${new URL("../lib/graph/mod.ts", import.meta.url).href}";
      try {
        const b = await selectBackend("webgpu", true);
        const g = new Graph();
        const p = compile({ c: matmul(g.input("a", [3, 4]), g.input("b", [4, 5])) }, [],
          b.limits, "webgpu");
        console.log(JSON.stringify({ kernels: p.kernels, device: b.device,
          tiled: p.steps.some((s) => s.kernel.code.includes("var<workgroup>")) }));
      } catch (e) {
        console.log(e.name + ": " + e.message);
        Deno.exit(3);
      }`;
    const other: KernelClass = gpu!.software ? "hardware" : "software";
    const forced = await withEnv(other, script);
    if (forced.code !== 0) throw new Error(forced.text);
    const r = JSON.parse(forced.text.trim().split("\n").pop()!);
    if (r.kernels !== other || r.tiled !== (other === "hardware")) throw new Error(forced.text);
    // A class other than the adapter's is named with the device (env.json, checkpoints, bench).
    if (!r.device.endsWith(`, ${other} kernels`)) throw new Error(`device '${r.device}'`);
    const bad = await withEnv("fast", script);
    if (bad.code !== 3 || !bad.text.includes(`InputError: ${KERNELS_ENV}="fast": expected`)) {
      throw new Error(`a bad value was not refused clearly:\n${bad.text}`);
    }
  },
});

Deno.test({
  name: "the device's class: the adapter's (or LVIT_WEBGPU_KERNELS'), recorded by its programs",
  ignore: noGpu,
  fn: () => {
    const env = Deno.env.get(KERNELS_ENV);
    const want = kernelClass(gpu!.software, env).kernels;
    if (gpu!.kernels !== want || gpu!.limits.kernels !== want) {
      throw new Error(`device class ${gpu!.kernels} (limits ${gpu!.limits.kernels}), want ${want}`);
    }
    const g = new Graph();
    const y = conv2d(g.input("x", [1, 2, 5, 5]), g.input("w", [3, 2, 3, 3]), undefined, {});
    for (const kernels of [undefined, "software", "hardware"] as const) {
      const p = compile({ y }, [], gpuLimits(kernels), "webgpu");
      if (p.target !== "webgpu" || p.kernels !== (kernels ?? want)) {
        throw new Error(`compiled for ${kernels ?? "the device"}: got ${JSON.stringify(p.target)}`);
      }
      const tiled = p.steps.every((s) => s.kernel.code.includes("var<workgroup>"));
      if (tiled !== (p.kernels === "hardware")) throw new Error(`${p.kernels}: tiled ${tiled}`);
    }
  },
});

/**
 * Conv forward and backward (split-K weight gradient), transposed conv, and matmuls (batched
 * with padded rows, split-K) with their gradients: every kind of tiled GEMM in one program.
 */
function gemmGraph() {
  const g = new Graph();
  const x = g.input("x", [3, 4, 20, 18]);
  const w = g.input("w", [6, 4, 3, 3]);
  const wt = g.input("wt", [6, 3, 2, 2]);
  const a = g.input("a", [2, 11, 5]);
  const b = g.input("b", [2, 5, 10]);
  const p = g.input("p", [3, 300]);
  const q = g.input("q", [300, 5]);
  const h = convTranspose(conv2d(x, w, undefined, { padding: 1, stride: 2 }), wt);
  const m = matmul(a, b);
  const s = matmul(p, q);
  const loss = sum(mul(h, h), [0, 1, 2, 3]);
  const lm = sum(mul(m, m), [0, 1, 2]);
  const ls = sum(mul(s, s), [0, 1]);
  const [dx, dw, dwt] = gradients(loss, [x, w, wt]);
  const [da, db] = gradients(lm, [a, b]);
  const [dp, dq] = gradients(ls, [p, q]);
  const leaves = new Map<string, Float64Array>();
  [x, w, wt, a, b, p, q].forEach((t, i) => leaves.set(t.name!, randn(t.size, 40 + i)));
  return { outputs: { h, m, s, dx, dw, dwt, da, db, dp, dq }, leaves };
}

Deno.test({
  name: "a hardware-class program gives bitwise-identical results run after run",
  ignore: noGpu,
  fn: async () => {
    const { outputs, leaves } = gemmGraph();
    let steps = 0, splitK = 0;
    const run = () =>
      runOn("webgpu", outputs, new Map(leaves), [], "hardware", (p) => {
        if (p.target !== "webgpu" || p.kernels !== "hardware") throw new Error("not hardware");
        const gemm = p.steps.filter((s) => GEMM_OPS.has(s.label.split("#")[0]));
        steps = gemm.length;
        splitK = gemm.filter((s) =>
          /^@group\(0\) @binding\(0\) var<storage, read> part/.test(
            s.kernel.code,
          )
        ).length;
      });
    const first = await run();
    const second = await run();
    if (steps < 10 || splitK < 3) throw new Error(`${steps} GEMM dispatches, ${splitK} split-K`);
    for (const [k, v] of Object.entries(first)) {
      const u = new Uint32Array(v.buffer), w = new Uint32Array(second[k].buffer);
      for (let i = 0; i < u.length; i++) {
        if (u[i] !== w[i]) throw new Error(`${k}[${i}]: ${v[i]} then ${second[k][i]}`);
      }
    }
    // And the software class agrees to rounding (the same sums in the same k order; split-K
    // boundaries differ between the classes).
    const sw = await runOn("webgpu", outputs, new Map(leaves), [], "software");
    for (const [k, v] of Object.entries(first)) {
      const scale = Math.max(1, ...Array.from(sw[k], Math.abs));
      for (let i = 0; i < v.length; i++) {
        if (Math.abs(v[i] - sw[k][i]) > 1e-5 * scale) {
          throw new Error(`${k}[${i}]: hardware ${v[i]}, software ${sw[k][i]}`);
        }
      }
    }
  },
});

Deno.test({
  name: "128 x 128 tiles (GEMMs of 256+ rows and columns, 32 KiB of workgroup memory) vs float64",
  ignore: noGpu || (gpu?.limits.maxComputeWorkgroupStorageSize ?? 0) < 16896,
  fn: async () => {
    // K = 40 (36): f32 sums of 40 N(0,1) products; gradients sum over 260-300 terms.
    const tol = { atol: 1e-4, rtol: 1e-5 };
    await checkOp(
      {
        name: "matmul [260,40] x [40,300]",
        inputs: { a: T(260, 40), b: T(40, 300) },
        build: (t) => matmul(t.a, t.b),
        ...tol,
      },
      "webgpu",
      "hardware",
    );
    await checkOp(
      {
        name: "conv2d x[1,4,16,17] w[260,4,3,3] p1",
        inputs: { x: T(1, 4, 16, 17), w: T(260, 4, 3, 3) },
        build: (t) => conv2d(t.x, t.w, undefined, { padding: 1 }),
        ...tol,
      },
      "webgpu",
      "hardware",
    );
    const g = new Graph();
    const p = compile({ c: matmul(g.input("a", [260, 40]), g.input("b", [40, 300])) }, [], {
      ...gpu!.limits,
      kernels: "hardware",
    }, "webgpu");
    if (p.target !== "webgpu" || !p.steps[0].kernel.code.includes("tile 128x128x8")) {
      throw new Error("the big GEMM did not get 128 x 128 tiles");
    }
  },
});
