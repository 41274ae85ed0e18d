// The demo's terminal view: on a terminal, a panel redrawn in place about 4
// times a second (paths and their state, I/O in flight, a latency sparkline per
// path, the recent decisions) under the scrolling narrative; elsewhere, the
// narrative alone, as plain lines.
import { readBlockStat, serviceTimeMs, type BlockStat } from '../watchdog/sysfs-counters';

/** Where the view writes. */
export interface ViewOut {
  write(text: string): unknown;
}

const BARS = '▁▂▃▄▅▆▇█';
/** Sparkline scale: log from 1 ms to 2 s. */
const LO_MS = 1;
const HI_MS = 2000;

/** One sample per cell: a latency in ms drawn on a log scale, or null (no completion in that tick) drawn as a space. */
export function sparkline(samples: readonly (number | null)[]): string {
  const span = Math.log(HI_MS / LO_MS);
  return samples.map((ms) => {
    if (ms === null) return ' ';
    const x = Math.log(Math.min(Math.max(ms, LO_MS), HI_MS) / LO_MS) / span;
    return BARS[Math.min(BARS.length - 1, Math.floor(x * BARS.length))] as string;
  }).join('');
}

/** Per-tick mean service time of a block device from its sysfs stat, null when nothing completed. */
export class TickLatency {
  readonly #name: string;
  readonly #samples: (number | null)[] = [];
  readonly #width: number;
  #last: BlockStat | null = null;

  constructor(name: string, width: number) {
    this.#name = name;
    this.#width = width;
  }

  /** Reads the counters and appends this tick's sample (a vanished device gives null). */
  async tick(): Promise<void> {
    const now = await readBlockStat(this.#name).catch(() => null);
    const sample = now && this.#last ? serviceTimeMs(this.#last, now) : null;
    this.#last = now;
    this.#samples.push(sample);
    if (this.#samples.length > this.#width) this.#samples.shift();
  }

  /** The sparkline of the samples so far, padded to the width. */
  spark(): string {
    return sparkline(this.#samples).padEnd(this.#width);
  }
}

/** The narrative, plus the live panel when `live`. */
export class DemoView {
  readonly #out: ViewOut;
  readonly live: boolean;
  #panel: string[] = [];
  #drawn = 0;
  #closed = false;

  constructor(out: ViewOut, live: boolean) {
    this.#out = out;
    this.live = live;
  }

  /** One narrative line (above the panel when live). */
  say(line: string): void {
    if (!this.live) {
      this.#out.write(`${line}\n`);
      return;
    }
    this.#out.write(`${this.#erase()}${line}\n${this.#render()}`);
  }

  /** Replaces the panel and redraws it in place (nothing when not live). */
  panel(lines: readonly string[]): void {
    // A refresh still under way when the view closed must not draw again.
    if (!this.live || this.#closed) return;
    this.#panel = [...lines];
    this.#out.write(`${this.#erase()}${this.#render()}`);
  }

  /** Leaves the last panel on screen and stops drawing over it (later panels are ignored). */
  close(): void {
    this.#closed = true;
    this.#drawn = 0;
    this.#panel = [];
  }

  // Cursor to the start of the panel's first line, and clear to the end of the screen.
  #erase(): string {
    return this.#drawn === 0 ? '' : `\x1b[${this.#drawn}F\x1b[J`;
  }

  #render(): string {
    this.#drawn = this.#panel.length;
    return this.#panel.map((l) => `${l}\n`).join('');
  }
}
