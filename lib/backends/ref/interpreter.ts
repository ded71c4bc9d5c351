/**
 * The float64 reference: runs a graph with each op's `ref` function. It is the ground truth the
 * kernels are tested against and the arithmetic of the finite-difference gradient checks.
 */
import { getOp, type Tensor } from "../../graph/graph.ts";
import { schedule } from "../../graph/plan.ts";

/**
 * Evaluates `outputs` (and runs `effects`, which update `leaves` in place) in float64.
 * `leaves` maps input/param/state names to their values.
 */
export function runRef(
  outputs: Record<string, Tensor>,
  leaves: Map<string, Float64Array>,
  effects: readonly Tensor[] = [],
): Record<string, Float64Array> {
  const vals = new Map<Tensor, Float64Array>();
  for (const t of schedule(Object.values(outputs), effects)) {
    if (t.kind !== "node") {
      const v = leaves.get(t.name!);
      if (!v) throw new Error(`runRef: no value for '${t.name}'`);
      if (v.length !== t.size) {
        throw new Error(`runRef: '${t.name}' has ${v.length} values, needs ${t.size}`);
      }
      vals.set(t, v);
      continue;
    }
    const def = getOp(t.op);
    vals.set(
      t,
      def.ref(t.inputs.map((x) => vals.get(x)!), t.inputs.map((x) => x.shape), t.attrs, t.shape),
    );
  }
  const res: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(outputs)) res[k] = vals.get(t)!;
  return res;
}
