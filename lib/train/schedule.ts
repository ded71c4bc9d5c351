/**
 * Learning-rate schedules, stepped once per epoch after validation as the reference does
 * (lvit-reference.md 5): epoch e (0-based) trains with `lrAt(e)`.
 */

/** A schedule's settings, as in the experiment file's `train.schedule`. */
export interface ScheduleConfig {
  /** Cosine annealing with warm restarts, or the initial rate throughout. */
  kind: "cosine-restarts" | "constant";
  /** Epochs of the first cosine cycle (PyTorch's T_0). */
  t0: number;
  /** Growth factor of each following cycle (T_mult, an integer >= 1). */
  t_mult: number;
  /** Floor of the cosine (eta_min). */
  eta_min: number;
}

/**
 * PyTorch's CosineAnnealingWarmRestarts stepped per epoch:
 * lr = eta_min + (lr0 - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2, where T_cur counts epochs
 * since the last restart and T_i is the current cycle length (t0 * t_mult^k). Computed in
 * float64 from the epoch index, so a resumed run gets exactly the same values.
 * @param lr0 the initial learning rate
 * @param epoch 0-based epoch index
 */
export function lrAt(s: ScheduleConfig, lr0: number, epoch: number): number {
  if (s.kind === "constant") return lr0;
  let tCur = epoch;
  let tI = s.t0;
  // Walk the cycles: at most log_{t_mult}(epoch) iterations for t_mult > 1, one division else.
  if (s.t_mult === 1) tCur = epoch % s.t0;
  else {
    while (tCur >= tI) {
      tCur -= tI;
      tI *= s.t_mult;
    }
  }
  return s.eta_min + (lr0 - s.eta_min) * (1 + Math.cos(Math.PI * tCur / tI)) / 2;
}
