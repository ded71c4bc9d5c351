/**
 * Implicit GEMM generators: C[M x N] = A[M x K] · B[K x N], where A and B are never
 * materialised. Each op describes how to load A(m, k) and B(k, n) from its real tensors
 * (im2col-style index maths for convolutions) and how to store C(m, n) (a `GemmSpec`). Every
 * conv-family kernel, forward and backward, and matmul are instances of one spec, turned into
 * WGSL by the generator of the adapter class (`gemm`):
 *
 * - `software` (`gemmKernel`): register blocks. On Mesa's software adapter each storage-buffer
 *   load costs ~20 cycles while FMAs are cheap (design.md 6), so each invocation keeps a TM x TN
 *   block of accumulators in registers and pays TM + TN loads per TM*TN FMAs. No shared memory,
 *   no barriers (barriers are what lavapipe does worst).
 * - `hardware` (`tiledGemmKernel`): a workgroup computes a BM x BN tile of C; BK-deep slabs of A
 *   and B are loaded cooperatively (coalesced along the operand's contiguous axis) into
 *   double-buffered `var<workgroup>` arrays, and each invocation accumulates a TM x TN register
 *   block from them with vec4 reads.
 *
 * Both are deterministic the same way: no atomics, and every output is summed by one invocation
 * in k order (workgroup memory only stages operands). When K is large and M x N small (weight
 * gradients) the K range is split across invocations (workgroups) and the partial sums are added
 * in split order by a second kernel.
 */
import type { Binding, KernelPlan, KernelTarget, WgslKernel } from "./types.ts";
import { ceilDiv, u32 } from "./common.ts";

export interface GemmSpec {
  M: number;
  N: number;
  K: number;
  /** WGSL declarations of the buffers read by the loads (bindings 0..). */
  decls: string[];
  bindings: Binding[];
  /**
   * Statements run once per n column `n{j}` (suffix j): decode n into coordinates. Variables
   * must carry the suffix j, so that several columns can be decoded in one scope.
   */
  perN?: (j: number) => string;
  /** Statements run once per k inside the loop (k in variable `k`). */
  perK?: string;
  /**
   * Expression for A(m{i}, k); indices are already clamped into range. It may also use `n0` and
   * perN(0)'s variables: the first column of the invocation's (software) or workgroup's
   * (hardware) tile, for operands whose A depends on the batch of the tile (matmul folds).
   */
  loadA: (i: number) => string;
  /** Expression for B(k, n{j}); may use `m0`, the first row of the tile (see loadA). */
  loadB: (j: number) => string;
  /** Statement storing `v` at C(m{i}, n{j}) into array `out` (only called in range). */
  store: (i: number, j: number, v: string) => string;
  /** Software register block (default 8 x 8). */
  tm?: number;
  tn?: number;
  /** Hardware tile; default `tiledConfig(M, N, target)`. Matmul folds align batches to it. */
  tiled?: TiledConfig;
  /**
   * Hardware loads: the axis along which neighbouring elements of A (B) are adjacent in memory,
   * so that neighbouring invocations load neighbouring addresses (default "k" for A, "n" for B).
   */
  contigA?: "m" | "k";
  contigB?: "n" | "k";
}

/** The generator of the target's class for one GEMM (see the module doc). */
export function gemm(spec: GemmSpec, t: KernelTarget): KernelPlan {
  return t.kernels === "hardware"
    ? tiledGemmKernel(spec, spec.tiled ?? tiledConfig(spec.M, spec.N, t))
    : gemmKernel(spec);
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
  return splitKPlan(spec, main, splits);
}

/**
 * A split-K GEMM's plan: `main` writes the partial sums part[split][m][n]; a second kernel adds
 * them in split order, then applies the op's own store (bias etc.).
 */
function splitKPlan(spec: GemmSpec, main: WgslKernel, splits: number): KernelPlan {
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

// ---------------------------------------------------------------------------------------------
// Hardware class: a GEMM tiled through workgroup memory.

/**
 * The tile of the hardware generator: a workgroup of wgX * wgY invocations computes a
 * BM x BN = (tm * wgY) x (tn * wgX) block of C, reading A and B in `bk`-deep slabs; each
 * invocation keeps tm x tn accumulators (tm and tn multiples of 4: vec4 reads).
 */
export interface TiledConfig {
  wgX: number;
  wgY: number;
  tm: number;
  tn: number;
  bk: number;
}

/**
 * Workgroup memory of a config: two slabs (double buffering) of A (bk x BM) and B (bk x BN),
 * each slab row padded by one vec4 so that neighbouring invocations storing neighbouring k of
 * one row hit different banks.
 */
export function tiledStorageBytes(c: TiledConfig): number {
  return 2 * c.bk * (c.tm * c.wgY + 4 + c.tn * c.wgX + 4) * 4;
}

/**
 * The tile for an M x N GEMM on a device: 16 x 16 invocations (256, the spec's minimum of
 * maxComputeInvocationsPerWorkgroup; 8 x 8 below it) and slabs 8 deep (a barrier per 128 FMAs
 * per invocation at 4 x 4); 8 x 8 accumulators each (128 x 128 tiles) when both sides have at
 * least two such tiles and their double-buffered slabs fit in maxComputeWorkgroupStorageSize
 * (16,896 bytes: more than the spec's default 16,384, less than the 32-48 KiB GPUs offer),
 * else 4 x 4 (64 x 64 tiles, 8,704 bytes; slabs 4 deep should even that not fit). Untuned: no
 * GPU has run these kernels yet.
 */
export function tiledConfig(M: number, N: number, t: KernelTarget): TiledConfig {
  const wg = t.maxComputeInvocationsPerWorkgroup >= 256 ? 16 : 8;
  const fits = (c: TiledConfig) => tiledStorageBytes(c) <= t.maxComputeWorkgroupStorageSize;
  const big = { wgX: wg, wgY: wg, tm: 8, tn: 8, bk: 8 };
  if (M >= 16 * wg && N >= 16 * wg && fits(big)) return big;
  for (const bk of [8, 4]) {
    const c = { wgX: wg, wgY: wg, tm: 4, tn: 4, bk };
    if (fits(c)) return c;
  }
  throw new Error(
    `no GEMM tile fits in ${t.maxComputeWorkgroupStorageSize} bytes of workgroup memory`,
  );
}

/** Split K when the tiles give fewer workgroups than this (about 2 per SM of an H100). */
const HW_MIN_WORKGROUPS = 256;
/** ...and keep at least this many k per split. */
const HW_MIN_SPLIT_K = 128;

const XYZW = ["x", "y", "z", "w"];

/**
 * The hardware generator (see the module doc). One workgroup per (tile, split):
 *
 * 1. Loads: slab s covers k in [k0 + s*bk, k0 + (s+1)*bk). Invocation `lid` loads the A elements
 *    (row, k) of its slots, neighbouring invocations taking neighbouring addresses of the
 *    operand's contiguous axis (`contigA`/`contigB`); each element goes through the spec's
 *    loadA/loadB (rows and columns clamped into range, k past the split's end read as 0.0, so
 *    the extra terms add exactly nothing) into a register, then into workgroup memory as
 *    tileA[slab][k][row] (vec4 rows padded by one vec4).
 * 2. Double buffering: each invocation issues the loads of slab s + 1 into registers, then
 *    multiplies slab s from one buffer, then stores the registers into the other buffer; one
 *    workgroupBarrier per slab separates "buffer b written" from "buffer b read" and "buffer b
 *    read" from "buffer b written again" (two slabs later).
 * 3. Multiply: invocation (lx, ly) owns rows 4 * (ly + g * wgY) + (0..3) and columns
 *    4 * (lx + h * wgX) + (0..3) of the tile, reads them as vec4s (neighbouring invocations read
 *    neighbouring vec4s: no bank conflicts) and adds a * b into each accumulator with fma, k in
 *    increasing order: every output is summed by one invocation in a fixed order.
 * 4. Store through the spec's `store` (or into part[split][m][n] for the split-K second pass).
 */
export function tiledGemmKernel(spec: GemmSpec, c: TiledConfig): KernelPlan {
  const { M, N, K } = spec;
  const { wgX, wgY, tm, tn, bk } = c;
  const T = wgX * wgY;
  const BM = tm * wgY;
  const BN = tn * wgX;
  const lda = BM / 4 + 1; // vec4s per slab row, one of them padding
  const ldb = BN / 4 + 1;
  const contigA = spec.contigA ?? "k";
  const contigB = spec.contigB ?? "n";
  const slotsA = (BM * bk) / T;
  const slotsB = (BN * bk) / T;
  const ok = tm % 4 === 0 && tn % 4 === 0 && Number.isInteger(slotsA) && slotsA >= 1 &&
    Number.isInteger(slotsB) && slotsB >= 1 &&
    (contigA === "k" ? T % bk === 0 : T % BM === 0) &&
    (contigB === "n" ? T % BN === 0 : T % bk === 0);
  if (!ok) throw new Error(`tiled GEMM: unusable tile ${JSON.stringify(c)}`);

  const tilesM = ceilDiv(M, BM);
  const tilesN = ceilDiv(N, BN);
  const tiles = tilesM * tilesN;
  let splits = 1;
  if (tiles < HW_MIN_WORKGROUPS && K >= 2 * HW_MIN_SPLIT_K) {
    splits = Math.min(ceilDiv(HW_MIN_WORKGROUPS, tiles), Math.floor(K / HW_MIN_SPLIT_K));
  }
  const kLen = ceilDiv(ceilDiv(K, splits), bk) * bk;
  splits = ceilDiv(K, kLen);
  const total = tiles * splits;

  const L: string[] = [];
  const p = (s: string) => L.push(s);
  p(`  let wgi = wid.x + wid.y * nwg.x;`);
  p(`  if (wgi >= ${u32(total)}) { return; }`);
  p(`  let tile = wgi % ${u32(tiles)};`);
  p(`  let split = wgi / ${u32(tiles)};`);
  p(`  let rowBase = (tile / ${u32(tilesN)}) * ${u32(BM)};`);
  p(`  let colBase = (tile % ${u32(tilesN)}) * ${u32(BN)};`);
  p(`  let lx = lid % ${u32(wgX)};`);
  p(`  let ly = lid / ${u32(wgX)};`);
  // The tile's first row and column, for loads that depend on the tile's batch (GemmSpec).
  p(`  let m0 = min(rowBase, ${u32(M - 1)});`);
  p(`  let n0 = min(colBase, ${u32(N - 1)});`);
  if (spec.perN) p(spec.perN(0));
  // Load slots: each invocation's fixed rows of A (columns of B) and their k within the slab.
  const kkA = (s: number) =>
    contigA === "k" ? "lid % " + u32(bk) : `(lid / ${u32(BM)} + ${u32((s * T) / BM)})`;
  const kkB = (s: number) =>
    contigB === "k" ? "lid % " + u32(bk) : `(lid / ${u32(BN)} + ${u32((s * T) / BN)})`;
  for (let s = 0; s < slotsA; s++) {
    const row = contigA === "k" ? `lid / ${u32(bk)} + ${u32((s * T) / bk)}` : `lid % ${u32(BM)}`;
    p(`  let aRow${s} = ${row}; let aK${s} = ${kkA(s)};`);
    p(`  let m${s + 1} = min(rowBase + aRow${s}, ${u32(M - 1)});`);
    p(`  var ldA${s} = 0.0;`);
  }
  for (let s = 0; s < slotsB; s++) {
    const col = contigB === "n" ? `lid % ${u32(BN)}` : `lid / ${u32(bk)} + ${u32((s * T) / bk)}`;
    p(`  let bCol${s} = ${col}; let bK${s} = ${kkB(s)};`);
    p(`  let n${s + 1} = min(colBase + bCol${s}, ${u32(N - 1)});`);
    if (spec.perN) p(spec.perN(s + 1));
    p(`  var ldB${s} = 0.0;`);
  }
  p(`  let kBeg = split * ${u32(kLen)};`);
  p(`  let kEnd = min(kBeg + ${u32(kLen)}, ${u32(K)});`);
  p(`  let nSlab = (kEnd - kBeg + ${u32(bk - 1)}) / ${u32(bk)};`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) p(`  var acc${i}_${j} = 0.0;`);
  }
  // Slots whose k offset within the slab is the same expression share one decode of k (perK):
  // with loads along k every slot of the operand has the same offset.
  const byK = new Map<string, string[]>();
  const slotK = (kk: string, stmt: string) => byK.set(kk, [...(byK.get(kk) ?? []), stmt]);
  for (let s = 0; s < slotsA; s++) {
    slotK(kkA(s), `ldA${s} = select(0.0, ${spec.loadA(s + 1)}, kq < kEnd);`);
  }
  for (let s = 0; s < slotsB; s++) {
    slotK(kkB(s), `ldB${s} = select(0.0, ${spec.loadB(s + 1)}, kq < kEnd);`);
  }
  // Global -> registers for the slab starting at k = kb.
  const fetch = (kb: string, ind: string) => {
    const out: string[] = [];
    for (const [kk, loads] of byK) {
      out.push(`${ind}{`);
      out.push(`${ind}  let kq = ${kb} + ${kk}; let k = min(kq, ${u32(K - 1)});`);
      if (spec.perK) out.push(spec.perK);
      for (const l of loads) out.push(`${ind}  ${l}`);
      out.push(`${ind}}`);
    }
    return out.join("\n");
  };
  // Registers -> workgroup buffer `buf`.
  const stash = (buf: string, ind: string) => {
    const out: string[] = [];
    for (let s = 0; s < slotsA; s++) {
      out.push(
        `${ind}tileA[(${buf} * ${u32(bk)} + aK${s}) * ${
          u32(lda)
        } + aRow${s} / 4u][aRow${s} % 4u] = ldA${s};`,
      );
    }
    for (let s = 0; s < slotsB; s++) {
      out.push(
        `${ind}tileB[(${buf} * ${u32(bk)} + bK${s}) * ${
          u32(ldb)
        } + bCol${s} / 4u][bCol${s} % 4u] = ldB${s};`,
      );
    }
    return out.join("\n");
  };
  // Iteration s fetches slab s into registers, multiplies slab s - 1 (in buffer (s - 1) % 2)
  // while those loads are in flight, then stores slab s into buffer s % 2, which nobody reads
  // any more: its last reader, the multiply of slab s - 2, finished before the barrier that
  // ended iteration s - 1. The barrier ending iteration s publishes slab s for iteration s + 1.
  p(`  for (var slab = 0u; slab <= nSlab; slab++) {`);
  p(`    let fresh = slab < nSlab;`);
  p(`    if (fresh) {`);
  p(`      let kSlab = kBeg + slab * ${u32(bk)};`);
  p(fetch("kSlab", "      "));
  p(`    }`);
  p(`    if (slab > 0u) {`);
  p(`      let cur = (slab - 1u) % 2u;`);
  p(`      for (var kk = 0u; kk < ${u32(bk)}; kk++) {`);
  p(`        let ra = (cur * ${u32(bk)} + kk) * ${u32(lda)} + ly;`);
  p(`        let rb = (cur * ${u32(bk)} + kk) * ${u32(ldb)} + lx;`);
  for (let g = 0; g < tm / 4; g++) p(`        let va${g} = tileA[ra + ${u32(g * wgY)}];`);
  for (let h = 0; h < tn / 4; h++) p(`        let vb${h} = tileB[rb + ${u32(h * wgX)}];`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      const a = `va${i >> 2}.${XYZW[i & 3]}`;
      const b = `vb${j >> 2}.${XYZW[j & 3]}`;
      p(`        acc${i}_${j} = fma(${a}, ${b}, acc${i}_${j});`);
    }
  }
  p(`      }`);
  p(`    }`);
  p(`    if (fresh) {`);
  p(stash("(slab % 2u)", "      "));
  p(`    }`);
  p(`    workgroupBarrier();`);
  p(`  }`);
  // Store: this invocation's rows and columns of the tile, decoded afresh in their own scope.
  p(`  {`);
  const rowOf = (i: number) => `rowBase + ${u32(4 * (i >> 2) * wgY + (i & 3))} + 4u * ly`;
  const colOf = (j: number) => `colBase + ${u32(4 * (j >> 2) * wgX + (j & 3))} + 4u * lx`;
  for (let i = 0; i < tm; i++) {
    p(`    let gr${i} = ${rowOf(i)}; let m${i} = min(gr${i}, ${u32(M - 1)});`);
  }
  for (let j = 0; j < tn; j++) {
    p(`    let gc${j} = ${colOf(j)}; let n${j} = min(gc${j}, ${u32(N - 1)});`);
    if (spec.perN) p(spec.perN(j));
  }
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      const st = splits === 1
        ? spec.store(i, j, `acc${i}_${j}`)
        : `part[(split * ${u32(M)} + m${i}) * ${u32(N)} + n${j}] = acc${i}_${j};`;
      p(`    if (gr${i} < ${u32(M)} && gc${j} < ${u32(N)}) { ${st} }`);
    }
  }
  p(`  }`);

  const outDecl = splits === 1
    ? `@group(0) @binding(${spec.decls.length}) var<storage, read_write> out: array<f32>;`
    : `@group(0) @binding(${spec.decls.length}) var<storage, read_write> part: array<f32>;`;
  const code =
    `// tiled implicit GEMM (hardware class): ${M}x${N}x${K}, tile ${BM}x${BN}x${bk}, ${tm}x${tn} per invocation, ${splits} split(s)
${spec.decls.join("\n")}
${outDecl}
var<workgroup> tileA: array<vec4<f32>, ${2 * bk * lda}>;
var<workgroup> tileB: array<vec4<f32>, ${2 * bk * ldb}>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
${L.join("\n")}
}`;
  const main: WgslKernel = {
    code,
    bindings: [...spec.bindings, splits === 1 ? { out: true } : { scratch: 0 }],
    workgroups: total,
  };
  if (splits === 1) return { kernels: [main] };
  return splitKPlan(spec, main, splits);
}
