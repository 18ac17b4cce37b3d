// Renders trainer events: a progress bar on a terminal, one plain line per report
// otherwise, nothing on stdout with --json (everything here goes to stderr).
import cliProgress from "cli-progress";
import type { TrainEvent } from "../train/trainer.js";
import { log } from "./output.js";

export class TrainProgress {
  private bar: cliProgress.SingleBar | null = null;
  /** The bar's last values, to restart it as it was after a note. */
  private payload: Record<string, string> = { loss: "-", lr: "-", tps: "-" };

  constructor(private readonly opts: { json: boolean; logEvery: number }) {}

  private get tty(): boolean {
    return Boolean(process.stderr.isTTY) && !this.opts.json;
  }

  event(ev: TrainEvent): void {
    switch (ev.type) {
      case "start":
        if (this.tty) {
          this.bar = new cliProgress.SingleBar(
            {
              stream: process.stderr,
              format:
                "train |{bar}| {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s | ETA {eta_formatted}",
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          );
          this.bar.start(ev.totalSteps, ev.step, this.payload);
        }
        break;
      case "step":
        if (this.bar) {
          this.payload = {
            loss: ev.loss.toFixed(4),
            lr: ev.lr.toExponential(2),
            tps: ev.tokensPerSecond.toFixed(0),
          };
          this.bar.update(ev.step, this.payload);
        } else if (ev.step % this.opts.logEvery === 0 || ev.step === ev.totalSteps)
          log(
            `step ${ev.step}/${ev.totalSteps} loss ${ev.loss.toFixed(4)} lr ${ev.lr.toExponential(2)} grad-norm ${ev.gradNorm.toFixed(3)} ${ev.tokensPerSecond.toFixed(0)} tok/s`,
          );
        break;
      case "eval":
        this.note(`eval at step ${ev.step}: loss ${ev.loss.toFixed(4)} over ${ev.tokens} tokens`);
        break;
      case "checkpoint":
        break;
      case "end":
        this.bar?.stop();
        this.bar = null;
        break;
      default:
        ev satisfies never;
    }
  }

  /**
   * A line that does not break the bar: the bar stops, the line prints, and the bar comes
   * back with its values, unless it was complete (the final eval), when it stays gone rather
   * than leave a stale copy of itself under the last line.
   */
  note(msg: string): void {
    if (this.bar) {
      this.bar.stop();
      log(msg);
      const b = this.bar as unknown as { value: number; total: number };
      if (b.value >= b.total) this.bar = null;
      else this.bar.start(b.total, b.value, this.payload);
    } else log(msg);
  }

  stop(): void {
    this.bar?.stop();
  }
}
