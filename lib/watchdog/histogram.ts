// A fixed-bucket log-linear latency histogram (HDR-style, 16 sub-buckets per
// power of two). Recording is O(1) with no allocation; a quantile is one pass
// over 448 counters. Values are kept in whole microseconds: below 16 µs each
// microsecond has its own bucket, above that a bucket spans 1/16 of its power
// of two, so a quantile read back is an upper bound at most 6.25 % high
// (never above the exact max, which is kept separately).

const SUB_BITS = 4;
const SUB = 1 << SUB_BITS; // 16
const MAX_EXP = 30; // values up to 2^31 µs (~35 min); larger clamp into the last bucket
/** Number of buckets in every {@link LogHistogram}. */
export const HISTOGRAM_BUCKETS = SUB + (MAX_EXP - SUB_BITS + 1) * SUB;

function bucketOf(us: number): number {
  if (us < SUB) return us;
  if (us >= 2 ** (MAX_EXP + 1)) return HISTOGRAM_BUCKETS - 1;
  const exp = 31 - Math.clz32(us);
  const sub = (us >>> (exp - SUB_BITS)) & (SUB - 1);
  return SUB + (exp - SUB_BITS) * SUB + sub;
}

/** The largest microsecond value that lands in bucket `b`. */
function bucketTopUs(b: number): number {
  if (b < SUB) return b;
  const exp = SUB_BITS + Math.floor((b - SUB) / SUB);
  const sub = (b - SUB) % SUB;
  // Multiplication, not <<: the top bucket reaches 2^31, past int32.
  return (SUB + sub + 1) * 2 ** (exp - SUB_BITS) - 1;
}

/** Latency histogram in ms with O(1) record and cheap quantiles (upper bounds, ≤ 6.25 % high). */
export class LogHistogram {
  readonly #counts = new Float64Array(HISTOGRAM_BUCKETS);
  #count = 0;
  #sum = 0;
  #max = 0;

  /** Records one latency in ms (negative values count as 0). */
  record(ms: number): void {
    const v = ms > 0 ? ms : 0;
    this.#counts[bucketOf(Math.ceil(v * 1000))]++;
    this.#count++;
    this.#sum += v;
    if (v > this.#max) this.#max = v;
  }

  /** Samples recorded. */
  get count(): number {
    return this.#count;
  }

  /** Exact largest sample, ms (0 when empty). */
  get max(): number {
    return this.#max;
  }

  /** Exact mean, ms (NaN when empty). */
  get mean(): number {
    return this.#count === 0 ? NaN : this.#sum / this.#count;
  }

  /**
   * The q-quantile (0 < q <= 1) in ms: an upper bound of the exact
   * nearest-rank quantile, within one bucket. NaN when empty.
   */
  quantile(q: number): number {
    if (!(q > 0 && q <= 1)) throw new RangeError(`quantile takes 0 < q <= 1, got ${q}`);
    if (this.#count === 0) return NaN;
    const rank = Math.ceil(q * this.#count);
    let seen = 0;
    for (let b = 0; b < HISTOGRAM_BUCKETS; b++) {
      seen += this.#counts[b];
      // The last bucket also holds everything clamped into it; only max bounds it.
      if (seen >= rank) return b === HISTOGRAM_BUCKETS - 1 ? this.#max : Math.min(bucketTopUs(b) / 1000, this.#max);
    }
    return this.#max;
  }

  /** Adds every sample of `other` into this histogram. */
  merge(other: LogHistogram): void {
    for (let b = 0; b < HISTOGRAM_BUCKETS; b++) this.#counts[b] += other.#counts[b];
    this.#count += other.#count;
    this.#sum += other.#sum;
    if (other.#max > this.#max) this.#max = other.#max;
  }

  /** Forgets every sample. */
  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#sum = 0;
    this.#max = 0;
  }
}
