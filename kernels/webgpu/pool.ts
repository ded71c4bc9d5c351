/** Pooling and nearest upsampling, one output element per invocation, all gathers. */
import type { PoolGeom } from "../../lib/graph/ops/pool.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, storageDecl, u32, WG } from "./common.ts";

function simple(n: number, body: string, ins: number): KernelPlan {
  const decls = ["x", "y", "z"].slice(0, ins).map((nm, i) => storageDecl(i, nm, false));
  return {
    kernels: [{
      code: `${decls.join("\n")}\n${storageDecl(ins, "out", true)}\n${
        entry(`  let i = gi;\n  if (i >= ${u32(n)}) { return; }\n${body}`)
      }`,
      bindings: [...Array.from({ length: ins }, (_, k) => ({ in: k })), { out: true as const }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/** Max over each k x k window; the first maximum in scan order wins, as in PyTorch. */
export function maxpoolForward(g: PoolGeom): KernelPlan {
  const { B, C, H, W, k, s, OH, OW } = g;
  return simple(
    B * C * OH * OW,
    `  let pl = i / ${u32(OH * OW)}; let r = i % ${u32(OH * OW)};
  let base = pl * ${u32(H * W)} + (r / ${u32(OW)}) * ${u32(s * W)} + (r % ${u32(OW)}) * ${u32(s)};
  var m = x[base];
  for (var a = 0u; a < ${u32(k)}; a++) {
    for (var b = 0u; b < ${u32(k)}; b++) {
      let v = x[base + a * ${u32(W)} + b];
      if (v > m) { m = v; }
    }
  }
  out[i] = m;`,
    1,
  );
}

/**
 * dx at each input pixel: the sum of dy over the windows whose (first) maximum is this pixel.
 * Written as a gather over the windows covering the pixel so no two invocations write one value.
 */
export function maxpoolBackward(g: PoolGeom): KernelPlan {
  const { B, C, H, W, k, s, OH, OW } = g;
  return simple(
    B * C * H * W,
    `  let pl = i / ${u32(H * W)}; let r = i % ${u32(H * W)};
  let iy = i32(r / ${u32(W)}); let ix = i32(r % ${u32(W)});
  let xp = pl * ${u32(H * W)}; let dp = pl * ${u32(OH * OW)};
  let oy0 = max((iy - ${k - 1} + ${s - 1}) / ${s}, 0); let oy1 = min(iy / ${s}, ${OH - 1});
  let ox0 = max((ix - ${k - 1} + ${s - 1}) / ${s}, 0); let ox1 = min(ix / ${s}, ${OW - 1});
  var acc = 0.0;
  for (var oy = oy0; oy <= oy1; oy++) {
    for (var ox = ox0; ox <= ox1; ox++) {
      let base = xp + u32(oy * ${s}) * ${u32(W)} + u32(ox * ${s});
      var m = x[base];
      var at = base;
      for (var a = 0u; a < ${u32(k)}; a++) {
        for (var b = 0u; b < ${u32(k)}; b++) {
          let v = x[base + a * ${u32(W)} + b];
          if (v > m) { m = v; at = base + a * ${u32(W)} + b; }
        }
      }
      if (at == xp + r) { acc += y[dp + u32(oy) * ${u32(OW)} + u32(ox)]; }
    }
  }
  out[i] = acc;`,
    2,
  );
}

/** Nearest upsampling by an integer factor f. */
export function upsampleNearest(B: number, C: number, H: number, W: number, f: number) {
  const WO = W * f;
  return simple(
    B * C * H * f * WO,
    `  let pl = i / ${u32(H * f * WO)}; let r = i % ${u32(H * f * WO)};
  out[i] = x[pl * ${u32(H * W)} + (r / ${u32(WO * f)}) * ${u32(W)} + (r % ${u32(WO)}) / ${
      u32(f)
    }];`,
    1,
  );
}

/** Sum over f x f blocks (the gradient of nearest upsampling), in row-major order. */
export function poolSum(B: number, C: number, H: number, W: number, f: number) {
  const OH = H / f;
  const OW = W / f;
  return simple(
    B * C * OH * OW,
    `  let pl = i / ${u32(OH * OW)}; let r = i % ${u32(OH * OW)};
  let base = pl * ${u32(H * W)} + (r / ${u32(OW)}) * ${u32(f * W)} + (r % ${u32(OW)}) * ${u32(f)};
  var acc = 0.0;
  for (var a = 0u; a < ${u32(f)}; a++) {
    for (var b = 0u; b < ${u32(f)}; b++) { acc += x[base + a * ${u32(W)} + b]; }
  }
  out[i] = acc;`,
    1,
  );
}
