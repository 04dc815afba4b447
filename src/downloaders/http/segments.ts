// The segment map of one ranged download: which byte ranges are finished (written), which are
// being fetched, and which are waiting. A free connection takes a waiting range or steals the
// second half of the largest range still being fetched, so no connection idles near the end.

/** Half-open byte range [start, end). */
export type ByteRange = [start: number, end: number];

export class Segment {
  start: number;
  /** Exclusive; shrinks when another connection steals the tail. */
  end: number;
  /** Next byte to receive. */
  pos: number;
  /** Bytes [start, flushed) are written to the file. */
  flushed: number;
  /** Failed attempts in a row without progress. */
  failures = 0;
  /** When the current request started delivering, and `pos` then (for the speed estimate). */
  rateSince = 0;
  rateFrom = 0;
  constructor(start: number, end: number) {
    this.start = start;
    this.end = end;
    this.pos = start;
    this.flushed = start;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  /** Estimated ms to finish at the current request's speed; Infinity when unknown or idle. */
  etaMs(now: number): number {
    const elapsed = now - this.rateSince;
    const got = this.pos - this.rateFrom;
    if (this.rateSince === 0 || elapsed < 100 || got <= 0) return Infinity;
    return this.remaining / (got / elapsed);
  }
  /** Marks the start of a request that delivers from `pos` on. */
  startRate(now: number): void {
    this.rateSince = now;
    this.rateFrom = this.pos;
  }
}

/** Sorts and merges overlapping or touching ranges. */
export function mergeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  const out: ByteRange[] = [];
  for (const [s, e] of sorted) {
    const last = out.at(-1);
    if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/** The gaps of `done` inside [0, total). */
export function missingRanges(total: number, done: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let pos = 0;
  for (const [s, e] of mergeRanges(done)) {
    if (s > pos) out.push([pos, Math.min(s, total)]);
    pos = Math.max(pos, e);
  }
  if (pos < total) out.push([pos, total]);
  return out.filter(([s, e]) => e > s);
}

export class SegmentPlan {
  readonly total: number;
  readonly minSplit: number;
  /** Only split a range that would take longer than this to finish on its own connection. */
  readonly minStealMs: number;
  #done: ByteRange[];
  readonly #pending: Segment[] = [];
  readonly active = new Set<Segment>();

  /** A plan for [0, total) where `done` is already on disk, cut into about `pieces` segments. */
  constructor(total: number, done: readonly ByteRange[], pieces: number, minSplit: number, minStealMs = 0) {
    this.total = total;
    this.minSplit = minSplit;
    this.minStealMs = minStealMs;
    this.#done = mergeRanges(done.map(([s, e]) => [Math.max(0, s), Math.min(total, e)]));
    const missing = missingRanges(total, this.#done).map(([s, e]) => new Segment(s, e));
    // Split the largest pieces until there are enough for every connection.
    while (missing.length < pieces) {
      let largest = missing[0];
      for (const m of missing) if (largest === undefined || m.remaining > largest.remaining) largest = m;
      if (largest === undefined || largest.remaining < 2 * minSplit) break;
      const mid = largest.start + Math.ceil(largest.remaining / 2);
      missing.push(new Segment(mid, largest.end));
      largest.end = mid;
    }
    missing.sort((a, b) => a.start - b.start);
    this.#pending.push(...missing);
  }

  /** Bytes already finished when the plan was made plus segments finished since. */
  get doneBytes(): number {
    return this.#done.reduce((n, [s, e]) => n + e - s, 0);
  }

  /** The active segment worth splitting: the one that would finish last, if splitting pays off. */
  #victim(now: number): Segment | null {
    let victim: Segment | null = null;
    let worst = -1;
    for (const s of this.active) {
      if (s.remaining < 2 * this.minSplit) continue;
      const eta = s.etaMs(now);
      // Unknown speed (request not answered yet): leave it; the stall watchdog handles dead ones.
      if (eta === Infinity || eta < this.minStealMs) continue;
      if (eta > worst) {
        worst = eta;
        victim = s;
      }
    }
    return victim;
  }

  /**
   * Next segment for a free connection: the lowest waiting one, else the second half of the
   * active range that would finish last (when at least 2·minSplit remain and it would take more
   * than minStealMs on its own; splitting a range about to finish only wastes the bytes in flight).
   */
  take(now = performance.now()): Segment | null {
    const next = this.#pending.shift();
    if (next !== undefined) {
      this.active.add(next);
      return next;
    }
    const victim = this.#victim(now);
    if (victim === null) return null;
    const mid = victim.pos + Math.ceil(victim.remaining / 2);
    const stolen = new Segment(mid, victim.end);
    victim.end = mid;
    this.active.add(stolen);
    return stolen;
  }

  /** Takes a specific waiting segment (the one the probe response already covers). */
  takeAt(start: number): Segment | null {
    const i = this.#pending.findIndex((s) => s.start === start);
    if (i < 0) return null;
    const [seg] = this.#pending.splice(i, 1);
    if (seg === undefined) return null;
    this.active.add(seg);
    return seg;
  }

  /** Whether a free connection would get work. */
  hasWork(now = performance.now()): boolean {
    return this.#pending.length > 0 || this.#victim(now) !== null;
  }

  /** The first waiting segment (what a resumed probe asks for). */
  firstPending(): Segment | undefined {
    return this.#pending[0];
  }

  /** A segment whose bytes up to `flushed` are on disk gives up; the rest waits for a connection. */
  release(seg: Segment): void {
    this.active.delete(seg);
    if (seg.flushed > seg.start) this.#done = mergeRanges([...this.#done, [seg.start, seg.flushed]]);
    if (seg.flushed < seg.end) {
      const rest = new Segment(seg.flushed, seg.end);
      rest.failures = seg.failures;
      this.#pending.push(rest);
      this.#pending.sort((a, b) => a.start - b.start);
    }
  }

  /** Everything is on disk. */
  get complete(): boolean {
    return this.#pending.length === 0 && this.active.size === 0 && this.doneBytes >= this.total;
  }

  /** Finished ranges, including the flushed parts of active segments (for checkpoints). */
  snapshot(): ByteRange[] {
    const ranges: ByteRange[] = [...this.#done];
    for (const s of this.active) if (s.flushed > s.start) ranges.push([s.start, s.flushed]);
    return mergeRanges(ranges);
  }
}
