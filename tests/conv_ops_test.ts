/**
 * The convolution ops: every sample of tests/op_info/conv.ts on WebGPU, on the CPU and by finite
 * differences; the forward references against independent loops written from the PyTorch
 * definitions (the backend comparisons cannot catch a misreading that kernel and reference
 * share; both sides are float64 over the same few terms: atol 1e-12); last, coverage.
 */
import { conv2d, convTranspose } from "../lib/graph/mod.ts";
import { assertClose } from "./harness.ts";
import { at4, numelOf, OpSuite, refRun } from "./op_suite.ts";
import { CONV_TABLE } from "./op_info/conv.ts";

const suite = new OpSuite("conv_ops_test.ts", { hardware: true });
suite.table(CONV_TABLE);

interface ConvOpts {
  stride?: number;
  padding?: number;
  dilation?: number;
}

Deno.test("conv2d reference vs an independent zero-padded loop", () => {
  const configs: [number[], number[], ConvOpts, boolean][] = [
    [[2, 3, 9, 8], [4, 3, 3, 3], { stride: 2, padding: 1, dilation: 2 }, true],
    [[1, 2, 11, 7], [3, 2, 5, 3], { stride: 3 }, false],
    [[3, 2, 1, 1], [2, 2, 3, 3], { padding: 1 }, true],
    [[1, 1, 6, 6], [1, 1, 2, 2], { stride: 2, padding: 2 }, false],
  ];
  configs.forEach(([xs, ws, o, hasBias], n) => {
    const ins: Record<string, number[]> = { x: xs, w: ws };
    if (hasBias) ins.b = [ws[0]];
    const r = refRun(ins, (t) => conv2d(t.x, t.w, t.b, { ...o }), 800 + 10 * n);
    const [B, C, H, W] = xs;
    const [O, , KH, KW] = ws;
    const s = o.stride ?? 1, p = o.padding ?? 0, d = o.dilation ?? 1;
    const Hp = H + 2 * p, Wp = W + 2 * p;
    const xp = new Float64Array(B * C * Hp * Wp);
    const x = r.v.get("x")!, w = r.v.get("w")!, bias = r.v.get("b");
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H; i++) {
          for (let j = 0; j < W; j++) {
            xp[at4([B, C, Hp, Wp], b, c, i + p, j + p)] = x[at4(xs, b, c, i, j)];
          }
        }
      }
    }
    const OH = Math.floor((Hp - d * (KH - 1) - 1) / s) + 1;
    const OW = Math.floor((Wp - d * (KW - 1) - 1) / s) + 1;
    const ys = [B, O, OH, OW];
    if (r.shape.join() !== ys.join()) throw new Error(`conv2d shape [${r.shape}] != [${ys}]`);
    const want = new Float64Array(B * O * OH * OW);
    for (let b = 0; b < B; b++) {
      for (let oc = 0; oc < O; oc++) {
        for (let i = 0; i < OH; i++) {
          for (let j = 0; j < OW; j++) {
            let acc = bias ? bias[oc] : 0;
            for (let c = 0; c < C; c++) {
              for (let ky = 0; ky < KH; ky++) {
                for (let kx = 0; kx < KW; kx++) {
                  acc += xp[at4([B, C, Hp, Wp], b, c, i * s + ky * d, j * s + kx * d)] *
                    w[at4(ws, oc, c, ky, kx)];
                }
              }
            }
            want[at4(ys, b, oc, i, j)] = acc;
          }
        }
      }
    }
    assertClose(`conv2d config ${n}`, r.y, want, 1e-12, 0);
  });
});

Deno.test("conv_transpose reference vs an independent output-side loop", () => {
  const configs: [number[], number[], boolean][] = [
    [[2, 3, 2, 3], [3, 4, 2, 2], true],
    [[1, 2, 3, 1], [2, 3, 3, 3], false],
  ];
  configs.forEach(([xs, ws, hasBias], n) => {
    const ins: Record<string, number[]> = { x: xs, w: ws };
    if (hasBias) ins.b = [ws[1]];
    const r = refRun(ins, (t) => convTranspose(t.x, t.w, t.b), 850 + 10 * n);
    const [B, C, H, W] = xs;
    const [, O, f] = ws;
    const ys = [B, O, H * f, W * f];
    if (r.shape.join() !== ys.join()) throw new Error(`conv_transpose shape [${r.shape}]`);
    const x = r.v.get("x")!, w = r.v.get("w")!, bias = r.v.get("b");
    const want = new Float64Array(numelOf(ys));
    for (let b = 0; b < B; b++) {
      for (let o = 0; o < O; o++) {
        for (let Y = 0; Y < H * f; Y++) {
          for (let X = 0; X < W * f; X++) {
            let acc = bias ? bias[o] : 0;
            for (let c = 0; c < C; c++) {
              acc += x[at4(xs, b, c, Math.floor(Y / f), Math.floor(X / f))] *
                w[at4(ws, c, o, Y % f, X % f)];
            }
            want[at4(ys, b, o, Y, X)] = acc;
          }
        }
      }
    }
    assertClose(`conv_transpose config ${n}`, r.y, want, 1e-12, 0);
  });
});

suite.coverageTest([
  "conv2d_bwd_data",
  "conv2d_bwd_weight",
  "conv_transpose_bwd_data",
  "conv_transpose_bwd_weight",
]);
