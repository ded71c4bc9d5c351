/**
 * A register-blocked implicit GEMM generator: C[M x N] = A[M x K] · B[K x N], where A and B are
 * never materialised. Each op describes how to load A(m, k) and B(k, n) from its real tensors
 * (im2col-style index maths for convolutions) and how to store C(m, n). Every conv-family
 * kernel, forward and backward, is an instance of this one generator.
 *
 * Why this shape: on Mesa's software adapter each storage-buffer load costs ~20 cycles while
 * FMAs are cheap (design.md 6), so each invocation keeps a TM x TN block of accumulators in
 * registers and pays TM + TN loads per TM*TN FMAs. No shared memory, no barriers, no atomics:
 * every output is summed by one invocation in k order, so results are deterministic. When K is
 * large and M x N small (weight gradients) the K range is split across invocations and the
 * partial sums are added in split order by a second kernel.
 */
import type { KernelPlan, WgslKernel } from "./types.ts";
import type { Binding } from "./types.ts";
import { ceilDiv, u32 } from "./common.ts";

export interface GemmSpec {
  M: number;
  N: number;
  K: number;
  /** WGSL declarations of the buffers read by the loads (bindings 0..). */
  decls: string[];
  bindings: Binding[];
  /** Statements run once per n column `n{j}` (suffix j): decode n into coordinates. */
  perN?: (j: number) => string;
  /** Statements run once per k inside the loop (k in variable `k`). */
  perK?: string;
  /** Expression for A(m{i}, k); indices are already clamped into range. */
  loadA: (i: number) => string;
  /** Expression for B(k, n{j}). */
  loadB: (j: number) => string;
  /** Statement storing `v` at C(m{i}, n{j}) into array `out` (only called in range). */
  store: (i: number, j: number, v: string) => string;
  tm?: number;
  tn?: number;
}

const WG_GEMM = 64;

/** Aim for at least this many invocations so both cores and all SIMD lanes have work. */
const MIN_INVOCATIONS = 512;

export function gemmKernel(spec: GemmSpec): KernelPlan {
  const tm = Math.min(spec.tm ?? 8, spec.M);
  const tn = Math.min(spec.tn ?? 8, spec.N);
  const tilesM = ceilDiv(spec.M, tm);
  const tilesN = ceilDiv(spec.N, tn);
  const tiles = tilesM * tilesN;
  // Split K only when the tiles alone cannot fill the machine and each split keeps real work.
  let splits = 1;
  if (tiles < MIN_INVOCATIONS && spec.K >= 256) {
    splits = Math.min(ceilDiv(MIN_INVOCATIONS, tiles), ceilDiv(spec.K, 128));
  }
  const kLen = ceilDiv(spec.K, splits);
  const outDecl = splits === 1
    ? `@group(0) @binding(${spec.decls.length}) var<storage, read_write> out: array<f32>;`
    : `@group(0) @binding(${spec.decls.length}) var<storage, read_write> part: array<f32>;`;

  const lines: string[] = [];
  lines.push(`  let t = gi % ${u32(tiles)};`);
  lines.push(`  let split = gi / ${u32(tiles)};`);
  lines.push(`  if (split >= ${u32(splits)}) { return; }`);
  lines.push(`  let tm0 = (t / ${u32(tilesN)}) * ${u32(tm)};`);
  lines.push(`  let tn0 = (t % ${u32(tilesN)}) * ${u32(tn)};`);
  for (let i = 0; i < tm; i++) lines.push(`  let m${i} = min(tm0 + ${i}u, ${u32(spec.M - 1)});`);
  for (let j = 0; j < tn; j++) {
    lines.push(`  let n${j} = min(tn0 + ${j}u, ${u32(spec.N - 1)});`);
    if (spec.perN) lines.push(spec.perN(j));
  }
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) lines.push(`  var c${i}_${j} = 0.0;`);
  }
  lines.push(`  let k0 = split * ${u32(kLen)};`);
  lines.push(`  let k1 = min(k0 + ${u32(kLen)}, ${u32(spec.K)});`);
  lines.push(`  for (var k = k0; k < k1; k++) {`);
  if (spec.perK) lines.push(spec.perK);
  for (let i = 0; i < tm; i++) lines.push(`    let a${i} = ${spec.loadA(i)};`);
  for (let j = 0; j < tn; j++) lines.push(`    let b${j} = ${spec.loadB(j)};`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) lines.push(`    c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`);
  }
  lines.push(`  }`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      const guard = `tm0 + ${i}u < ${u32(spec.M)} && tn0 + ${j}u < ${u32(spec.N)}`;
      const st = splits === 1
        ? spec.store(i, j, `c${i}_${j}`)
        : `part[(split * ${u32(spec.M)} + m${i}) * ${u32(spec.N)} + n${j}] = c${i}_${j};`;
      lines.push(`  if (${guard}) { ${st} }`);
    }
  }
  const code = `${spec.decls.join("\n")}
${outDecl}
@compute @workgroup_size(${WG_GEMM})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.x + wid.y * nwg.x) * ${WG_GEMM}u + lid;
${lines.join("\n")}
}`;
  const main: WgslKernel = {
    code,
    bindings: [...spec.bindings, splits === 1 ? { out: true } : { scratch: 0 }],
    workgroups: ceilDiv(tiles * splits, WG_GEMM),
  };
  if (splits === 1) return { kernels: [main] };

  // Second pass: C(m, n) = sum over splits in order, then the op's own store (bias etc.).
  const MN = spec.M * spec.N;
  const reduce = `@group(0) @binding(0) var<storage, read> part: array<f32>;
${spec.decls.map((d, i) => d.replace(`@binding(${i})`, `@binding(${i + 1})`)).join("\n")}
@group(0) @binding(${spec.decls.length + 1}) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG_GEMM})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.x + wid.y * nwg.x) * ${WG_GEMM}u + lid;
  if (gi >= ${u32(MN)}) { return; }
  let m0 = gi / ${u32(spec.N)};
  let n0 = gi % ${u32(spec.N)};
${spec.perN ? spec.perN(0) : ""}
  var s = 0.0;
  for (var p = 0u; p < ${u32(splits)}; p++) { s += part[p * ${u32(MN)} + gi]; }
  ${spec.store(0, 0, "s")}
}`;
  return {
    scratch: [splits * MN],
    kernels: [
      main,
      {
        code: reduce,
        bindings: [{ scratchIn: 0 }, ...spec.bindings, { out: true }],
        workgroups: ceilDiv(MN, WG_GEMM),
      },
    ],
  };
}
