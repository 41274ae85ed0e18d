// Checksummed blocks, the demo's verified load and the data-integrity tests':
// each block carries its index, a write generation and a SHA-256 of the rest,
// so a read tells a torn, stale, misplaced or lost write from a good one.
// Writers own disjoint blocks and write each one in turn, so the last
// acknowledged generation of a block is the one that must be on disk.
import { createHash } from 'node:crypto';

/** What the blocks are written through: a Watchdog or a DirectDevice. */
export interface BlockIo {
  alloc(bytes: number): Buffer;
  read(buf: Buffer, offset: number): Promise<unknown>;
  write(buf: Buffer, offset: number): Promise<unknown>;
}

/** Where the blocks live. */
export interface ChecksummedOptions {
  blocks: number;
  blockSize: number;
  /** Byte offset of block 0 (default 0). */
  baseOffset?: number;
}

const SUM = 32;
const TORN = 'bad checksum (torn or foreign data)';

/** A region of checksummed blocks, with the load that writes and checks them. */
export class ChecksummedBlocks {
  readonly blocks: number;
  readonly blockSize: number;
  readonly #base: number;
  /** Last acknowledged generation per block (-1: never written). */
  readonly acked: number[];
  /** Highest generation issued per block (acknowledged or not). */
  readonly #issued: number[];
  #gen = 0;
  writes = 0;
  reads = 0;
  /** Reads whose content was checked against the acknowledged state. */
  verified = 0;
  /** Reads that met a write to the same block and came back torn: not an error (no atomicity across a concurrent write). */
  raced = 0;
  /** I/O errors and content mismatches, in the order seen. */
  readonly errors: string[] = [];
  readonly maxMs = { read: 0, write: 0 };

  constructor(o: ChecksummedOptions) {
    if (o.blockSize <= SUM + 8) throw new RangeError(`blockSize ${o.blockSize} too small`);
    this.blocks = o.blocks;
    this.blockSize = o.blockSize;
    this.#base = o.baseOffset ?? 0;
    this.acked = new Array<number>(o.blocks).fill(-1);
    this.#issued = new Array<number>(o.blocks).fill(-1);
  }

  /** Byte offset of block `i`. */
  offset(i: number): number {
    return this.#base + i * this.blockSize;
  }

  /** Block `i` at generation `g`, in a buffer from `io`. */
  format(io: BlockIo, i: number, g: number): Buffer {
    const b = io.alloc(this.blockSize);
    b.fill(g & 0xff);
    b.writeUInt32LE(i, 0);
    b.writeUInt32LE(g, 4);
    createHash('sha256').update(b.subarray(0, this.blockSize - SUM)).digest().copy(b, this.blockSize - SUM);
    return b;
  }

  /** Why `buf` is not a good copy of block `i` at a generation in [minGen, maxGen], or null when it is. */
  check(buf: Buffer, i: number, minGen: number, maxGen: number): string | null {
    const sum = createHash('sha256').update(buf.subarray(0, this.blockSize - SUM)).digest();
    if (!sum.equals(buf.subarray(this.blockSize - SUM, this.blockSize))) return `block ${i}: ${TORN}`;
    if (buf.readUInt32LE(0) !== i) return `block ${i}: holds block ${buf.readUInt32LE(0)}`;
    const g = buf.readUInt32LE(4);
    if (g < minGen || g > maxGen) return `block ${i}: generation ${g}, expected ${minGen}..${maxGen}`;
    return null;
  }

  /** Starts `writers` writers (each cycling over its own blocks) and `readers` readers (random written blocks); stop() ends them. */
  /** Writes every block once (generation 1 and up), `depth` at a time, and acknowledges them: readers then have the whole region to check. */
  async fill(io: BlockIo, depth = 32): Promise<void> {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(depth, this.blocks) }, async () => {
      for (let i = next++; i < this.blocks; i = next++) {
        const g = ++this.#gen;
        this.#issued[i] = g;
        await io.write(this.format(io, i, g), this.offset(i));
        this.acked[i] = g;
      }
    }));
  }

  /**
   * Starts `writers` writers (each cycling over its own blocks) and `readers`
   * readers (random written blocks); `onDone` hears of every completed I/O
   * (performance.now()); stop() ends them.
   */
  run(io: BlockIo, counts: { writers: number; readers: number }, onDone?: (kind: 'read' | 'write', at: number) => void): { stop: () => Promise<void> } {
    if (!(counts.writers >= 0 && counts.writers <= this.blocks)) throw new RangeError(`writers must be 0..${this.blocks}, got ${counts.writers}`);
    let running = true;
    const time = async (kind: 'read' | 'write', p: Promise<unknown>): Promise<void> => {
      const t0 = performance.now();
      await p;
      const t1 = performance.now();
      this.maxMs[kind] = Math.max(this.maxMs[kind], t1 - t0);
      onDone?.(kind, t1);
    };
    const writers = Array.from({ length: counts.writers }, async (_, w) => {
      for (let i = w; running; i = i + counts.writers < this.blocks ? i + counts.writers : w) {
        const g = ++this.#gen;
        this.#issued[i] = g;
        try {
          await time('write', io.write(this.format(io, i, g), this.offset(i)));
          this.acked[i] = g;
          this.writes++;
        } catch (e) {
          this.errors.push(`write block ${i}: ${String(e)}`);
        }
      }
    });
    const readers = Array.from({ length: counts.readers }, async () => {
      const buf = io.alloc(this.blockSize);
      while (running) {
        const written = this.acked.flatMap((g, i) => (g >= 0 ? [i] : []));
        if (written.length === 0) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        const i = written[Math.floor(Math.random() * written.length)] as number;
        const minGen = this.acked[i] as number;
        const issuedAtSubmit = this.#issued[i] as number;
        try {
          await time('read', io.read(buf, this.offset(i)));
          this.reads++;
          const why = this.check(buf, i, minGen, this.#issued[i] as number);
          // A write in flight at submit, or issued since, may tear the read (a bad checksum); nothing excuses a wrong block or generation.
          const quiet = issuedAtSubmit === minGen && this.#issued[i] === issuedAtSubmit;
          if (!why) this.verified++;
          else if (!quiet && why.endsWith(TORN)) this.raced++;
          else this.errors.push(why);
        } catch (e) {
          this.errors.push(`read block ${i}: ${String(e)}`);
        }
      }
    });
    return {
      stop: async () => {
        running = false;
        await Promise.all([...writers, ...readers]);
      },
    };
  }

  /** Reads back every written block (call after the writers stopped), `depth` at a time: each must hold its last acknowledged generation. */
  async verifyAll(io: BlockIo, depth = 16): Promise<{ checked: number; bad: string[] }> {
    const bad: string[] = [];
    let checked = 0;
    let next = 0;
    await Promise.all(Array.from({ length: Math.max(1, Math.min(depth, this.blocks)) }, async () => {
      const buf = io.alloc(this.blockSize);
      for (let i = next++; i < this.blocks; i = next++) {
        const g = this.acked[i] as number;
        if (g < 0) continue;
        await io.read(buf, this.offset(i));
        const why = this.check(buf, i, g, g);
        if (why) bad.push(why);
        checked++;
      }
    }));
    return { checked, bad };
  }
}
