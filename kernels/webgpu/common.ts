/**
 * Shared pieces of the WGSL generators. Kernels are specialised to static shapes: sizes become
 * literals so that lavapipe's LLVM can fold index arithmetic, and one pipeline serves one node.
 */

/** Invocations per workgroup for the simple one-element-per-invocation kernels. */
export const WG = 64;

/** A WGSL f32 literal that rounds exactly like Math.fround in the TypeScript reference. */
export function f32(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`non-finite constant ${v} in a kernel`);
  const r = Math.fround(v);
  return `${r.toExponential(9)}f`;
}

/** A WGSL u32 literal. */
export function u32(v: number): string {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`bad u32 literal ${v}`);
  return `${v}u`;
}

export function storageDecl(binding: number, name: string, write: boolean): string {
  return `@group(0) @binding(${binding}) var<storage, ${
    write ? "read_write" : "read"
  }> ${name}: array<f32>;`;
}

/**
 * Entry point whose body sees `gi`, the linear invocation index. The compiler may fold the
 * workgroup count into a 2D grid (maxComputeWorkgroupsPerDimension), so the index is rebuilt
 * from `num_workgroups` rather than assumed one-dimensional.
 */
export function entry(body: string, wg = WG): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.x + wid.y * nwg.x) * ${wg}u + lid;
${body}
}`;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}
