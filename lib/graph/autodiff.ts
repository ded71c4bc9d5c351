/**
 * Reverse-mode autodiff over the recorded graph. Gradients are new nodes of the same graph,
 * built from the ops' gradient rules, so the forward pass, the loss, the backward pass and the
 * optimiser update compile into ONE program. Contributions from several consumers are added in
 * reverse creation order: a fixed order, so the summation is deterministic.
 */
import { getOp, type Tensor } from "./graph.ts";
import { add, affine } from "./ops/elementwise.ts";
import { sameShape } from "./shape.ts";

/** d(loss)/d(t) for each t of `wrt`; `loss` must have one element. */
export function gradients(loss: Tensor, wrt: readonly Tensor[]): Tensor[] {
  if (loss.size !== 1) throw new Error(`gradients: loss ${loss} is not a scalar`);
  const g = loss.graph;
  const needs = new Uint8Array(loss.id + 1);
  for (const t of wrt) if (t.id <= loss.id) needs[t.id] = 1;
  for (let i = 0; i <= loss.id; i++) {
    const t = g.nodes[i];
    if (t.inputs.some((x) => needs[x.id])) needs[i] = 1;
  }
  const grads = new Map<number, Tensor>();
  grads.set(loss.id, affine(loss, 0, 1));
  for (let i = loss.id; i >= 0; i--) {
    const t = g.nodes[i];
    const dy = grads.get(i);
    if (!dy || t.kind !== "node" || !needs[i]) continue;
    const def = getOp(t.op);
    if (!t.inputs.some((x) => needs[x.id])) continue;
    if (!def.grad) throw new Error(`op '${t.op}' (${t}) has no gradient rule`);
    const gs = g.withScope(
      `grad:${t.scope}`,
      () => def.grad!({ x: t.inputs, y: t, dy, attrs: t.attrs }),
    );
    t.inputs.forEach((x, k) => {
      const gx = gs[k];
      if (!gx || !needs[x.id]) return;
      if (!sameShape(gx.shape, x.shape)) {
        throw new Error(`gradient rule of '${t.op}' gave ${gx} for input ${x}`);
      }
      const prev = grads.get(x.id);
      grads.set(x.id, prev ? g.withScope(`grad:${x.scope}`, () => add(prev, gx)) : gx);
    });
  }
  return wrt.map((t) => {
    const gt = grads.get(t.id);
    // A parameter the loss does not depend on gets an explicit zero gradient.
    return gt ?? affine(t, 0, 0);
  });
}
