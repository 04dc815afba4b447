// Throttling of password guessing that an attacker cannot turn against a named account.
// Failures are counted per (account, address) pair with backoff, per address across accounts,
// and per account across addresses — the last only for addresses that never signed in to that
// account successfully, so a flood from elsewhere cannot lock its owner out from a known place.
// Memory is bounded: when full, expired entries go first, then the least recently touched ones
// (never everyone's counters at once).

const WINDOW_MS = 15 * 60_000;

export interface ThrottleLimits {
  /** failures of one account from one address before backoff starts */
  perPair: number;
  /** failures from one address, any account, before it must wait */
  perAddress: number;
  /** failures of one account from addresses it was never used from, before those must wait */
  perAccount: number;
  /** entries kept per table before the oldest are dropped */
  maxKeys: number;
}

export const DEFAULT_LIMITS: ThrottleLimits = {
  perPair: 10,
  perAddress: 30,
  perAccount: 100,
  maxKeys: 100_000,
};

/**
 * Failure times per key in a sliding window, least recently touched first. When full, it drops
 * expired keys, then keys below `protectAt` failures (least recent first), and only then keys
 * at the limit — so a flood of one-off keys cannot wipe the counters that hold an attacker back.
 */
class FailureLog {
  private readonly entries = new Map<string, number[]>();
  private readonly maxKeys: number;
  private readonly protectAt: number;
  constructor(maxKeys: number, protectAt: number) {
    this.maxKeys = maxKeys;
    this.protectAt = protectAt;
  }
  recent(key: string, now: number): number[] {
    const list = this.entries.get(key);
    if (!list) return [];
    const kept = list.filter((t) => now - t < WINDOW_MS);
    if (kept.length === 0) this.entries.delete(key);
    else if (kept.length !== list.length) this.entries.set(key, kept);
    return kept;
  }
  add(key: string, now: number): void {
    const list = this.recent(key, now);
    this.entries.delete(key); // re-inserted last: Map order is recency
    list.push(now);
    this.entries.set(key, list);
    if (this.entries.size > this.maxKeys) this.shrink(now);
  }
  clear(key: string): void {
    this.entries.delete(key);
  }
  get size(): number {
    return this.entries.size;
  }
  private shrink(now: number): void {
    const target = Math.floor(this.maxKeys * 0.9);
    for (const [key, list] of this.entries) if (now - list.at(-1)! >= WINDOW_MS) this.entries.delete(key);
    for (const [key, list] of this.entries) {
      if (this.entries.size <= target) return;
      if (list.length < this.protectAt) this.entries.delete(key);
    }
    for (const key of this.entries.keys()) {
      if (this.entries.size <= target) return;
      this.entries.delete(key);
    }
  }
}

/** Addresses an account signed in from, least recently used first (bounded like FailureLog). */
class KnownAddresses {
  private readonly seen = new Map<string, number>();
  private readonly maxKeys: number;
  constructor(maxKeys: number) {
    this.maxKeys = maxKeys;
  }
  add(key: string, now: number): void {
    this.seen.delete(key);
    this.seen.set(key, now);
    if (this.seen.size > this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
  }
  has(key: string, now: number): boolean {
    const at = this.seen.get(key);
    return at !== undefined && now - at < 30 * 86_400_000;
  }
}

/**
 * The address as counted: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /64 (one
 * host usually holds a whole /64, so counting single addresses would be no limit at all).
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export class SignInThrottle {
  private readonly limits: ThrottleLimits;
  private readonly pairs: FailureLog;
  private readonly addresses: FailureLog;
  private readonly accounts: FailureLog;
  private readonly known: KnownAddresses;

  constructor(limits: Partial<ThrottleLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.pairs = new FailureLog(this.limits.maxKeys, this.limits.perPair);
    this.addresses = new FailureLog(this.limits.maxKeys, this.limits.perAddress);
    this.accounts = new FailureLog(this.limits.maxKeys, this.limits.perAccount);
    this.known = new KnownAddresses(this.limits.maxKeys);
  }

  /** Seconds to wait before this account may be tried from this address, 0 = now. */
  retryAfter(account: string, ip: string, now: number): number {
    const address = addressKey(ip);
    const pair = this.pairs.recent(`${account}\n${address}`, now);
    let waitMs = 0;
    if (pair.length >= this.limits.perPair) {
      // Backoff: 30 s after the limit, doubling with each further failure, at most the window.
      const step = Math.min(WINDOW_MS, 30_000 * 2 ** Math.min(20, pair.length - this.limits.perPair));
      waitMs = Math.max(waitMs, pair.at(-1)! + step - now);
    }
    const fromAddress = this.addresses.recent(address, now);
    if (fromAddress.length >= this.limits.perAddress)
      waitMs = Math.max(waitMs, fromAddress[fromAddress.length - this.limits.perAddress]! + WINDOW_MS - now);
    if (!this.known.has(`${account}\n${address}`, now)) {
      const onAccount = this.accounts.recent(account, now);
      if (onAccount.length >= this.limits.perAccount) {
        const step = Math.min(WINDOW_MS, 1000 * 2 ** Math.min(20, onAccount.length - this.limits.perAccount));
        waitMs = Math.max(waitMs, onAccount.at(-1)! + step - now);
      }
    }
    return waitMs > 0 ? Math.ceil(waitMs / 1000) : 0;
  }

  fail(account: string, ip: string, now: number): void {
    const address = addressKey(ip);
    this.pairs.add(`${account}\n${address}`, now);
    this.addresses.add(address, now);
    this.accounts.add(account, now);
  }

  /** A right password: this address is known for the account and its pair counter starts over. */
  succeed(account: string, ip: string, now: number): void {
    const key = `${account}\n${addressKey(ip)}`;
    this.pairs.clear(key);
    this.known.add(key, now);
  }

  /** Entries held (for tests of the memory bound). */
  get size(): number {
    return this.pairs.size;
  }
}
