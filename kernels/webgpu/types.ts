/** What the WebGPU backend's lowering (lib/backends/webgpu/lower.ts) makes of one node. */

/** What one `@binding(i)` of a generated kernel refers to. */
export type Binding =
  | { in: number } // the node's i-th input, read-only
  | { out: true } // the node's output, read-write
  | { scratch: number } // a temporary of this node, read-write
  | { scratchIn: number } // the same temporary read-only by a later dispatch
  | { inplace: number }; // the i-th input, overwritten (effect ops)

/** One compute dispatch of an op. */
export interface WgslKernel {
  /** Complete WGSL module with entry point `main`. */
  code: string;
  /** What each `@binding(i)` of the module refers to, in binding order. */
  bindings: Binding[];
  /**
   * Number of workgroups. The compiler folds it into a 2D grid that respects
   * maxComputeWorkgroupsPerDimension; shaders read their linear id through `num_workgroups`.
   */
  workgroups: number;
}

/** The WGSL side of one node: its dispatches, in order, and the temporaries they share. */
export interface KernelPlan {
  /** The compute dispatches of the node, run in this order. */
  kernels: WgslKernel[];
  /** Sizes (in f32 elements) of temporaries the kernels share; they live only for this node. */
  scratch?: number[];
}

/**
 * Which kernels a program gets (design.md 3.4): `software` for CPU rasterizers (lavapipe,
 * llvmpipe, SwiftShader: register blocks, no workgroup memory) or `hardware` for GPUs (GEMMs
 * tiled through workgroup memory).
 */
export type KernelClass = "software" | "hardware";

/**
 * What a generator may specialise on besides shapes: the adapter class and the device limits
 * that size workgroup tiles. The same target and shapes always give the same WGSL.
 */
export interface KernelTarget {
  kernels: KernelClass;
  /** Bytes of `var<workgroup>` memory one workgroup may use (spec default 16384). */
  maxComputeWorkgroupStorageSize: number;
  /** Invocations one workgroup may have (spec default 256). */
  maxComputeInvocationsPerWorkgroup: number;
}

/** Today's kernels with the spec's default limits: what a program gets without a device. */
export const SOFTWARE_TARGET: KernelTarget = {
  kernels: "software",
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
};
