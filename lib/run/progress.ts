/**
 * The live progress line of a training run: on a terminal one line rewritten in place (epoch,
 * step/steps, loss, it/s, ETA); elsewhere (CI logs, files, pipes) a plain line every few
 * seconds, so logs stay readable.
 */

/** Formats seconds as h:mm:ss or m:ss. */
export function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export class Progress {
  private readonly tty: boolean;
  private lastPrint = 0;
  private lastLen = 0;
  private t0 = performance.now();
  private startSteps = 0;

  constructor(
    private readonly write: (s: string) => void = (s) =>
      Deno.stderr.writeSync(new TextEncoder().encode(s)),
    tty?: boolean,
    private readonly plainEverySeconds = 10,
  ) {
    this.tty = tty ?? Deno.stderr.isTerminal();
  }

  /** Starts timing (it/s and ETA count from here: a resumed run does not inherit old steps). */
  start(stepsDone: number) {
    this.t0 = performance.now();
    this.startSteps = stepsDone;
  }

  /**
   * Reports a step. `done`/`total` count steps over the whole run (total: if it ran all
   * epochs; early stopping can end it sooner).
   */
  update(p: {
    epoch: number;
    epochs: number;
    step: number;
    steps: number;
    loss: number | null;
    done: number;
    total: number;
  }) {
    const now = performance.now();
    const every = this.tty ? 0.2 : this.plainEverySeconds;
    if (now - this.lastPrint < every * 1000 && p.step !== p.steps) return;
    if (!this.tty && p.step === p.steps) return; // the epoch line follows
    this.lastPrint = now;
    const secs = (now - this.t0) / 1000;
    const rate = (p.done - this.startSteps) / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (p.total - p.done) / rate : NaN;
    const line = `epoch ${p.epoch}/${p.epochs}  step ${p.step}/${p.steps}  loss ${
      p.loss === null ? "-" : p.loss.toFixed(4)
    }  ${rate.toFixed(2)} it/s  ETA ${clock(eta)}`;
    if (this.tty) {
      this.write(`\r${line.padEnd(this.lastLen)}`);
      this.lastLen = line.length;
    } else this.write(line + "\n");
  }

  /** Prints a whole line (clearing the progress line on a terminal first). */
  line(s: string) {
    if (this.tty && this.lastLen) {
      this.write(`\r${" ".repeat(this.lastLen)}\r`);
      this.lastLen = 0;
    }
    this.write(s + "\n");
  }
}
