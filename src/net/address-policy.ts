// Outbound address policy: which hosts and IP addresses a download may connect to. Pure code, no
// I/O, so every rule is testable without opening a socket. The default is "public Internet only":
// loopback, private, link-local, CGNAT, multicast, documentation, benchmarking, reserved and the
// IPv6 transition forms that embed such an IPv4 address are all refused unless the operator opens
// a CIDR with `allowNetworks`.

import { isIP } from 'node:net';

export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private' // RFC 1918, IPv6 ULA fc00::/7, deprecated site-local fec0::/10, local-use NAT64
  | 'link-local'
  | 'cgnat' // 100.64.0.0/10 shared address space
  | 'multicast'
  | 'unspecified' // 0.0.0.0, ::
  | 'broadcast' // 255.255.255.255
  | 'documentation'
  | 'benchmarking'
  | 'tunnel' // Teredo: reaches arbitrary v4 hosts through relays, never needed by a download
  | 'reserved' // everything else that is not globally routable unicast
  | 'invalid'; // not an IP address at all

export type PolicyDecision = { ok: true } | { ok: false; reason: string };

// ---------------------------------------------------------------------------------------------
// Parsing

/** Parses a strict dotted-quad IPv4 address into a 32-bit unsigned integer, or null. */
function parseIPv4Strict(ip: string): number | null {
  if (isIP(ip) !== 4) return null;
  const parts = ip.split('.');
  let n = 0;
  for (const p of parts) n = n * 256 + Number(p);
  return n >>> 0;
}

/**
 * Parses an IPv4 address the way inet_aton and the WHATWG URL parser do: 1 to 4 parts, each
 * decimal, octal (leading 0) or hex (0x), the last part filling the remaining bytes. So `127.1`,
 * `2130706433`, `0x7f.0.0.1` and `0177.0.0.1` are all 127.0.0.1. Returns null when `s` is not such
 * an address (then it is a domain name).
 */
export function parseIPv4Loose(s: string): number | null {
  let str = s;
  if (str.endsWith('.')) str = str.slice(0, -1);
  if (str === '') return null;
  const parts = str.split('.');
  if (parts.length > 4) return null;
  const nums: number[] = [];
  for (const part of parts) {
    if (part === '') return null;
    let v: number;
    if (/^0x[0-9a-f]*$/i.test(part)) v = part.length === 2 ? 0 : parseInt(part.slice(2), 16);
    else if (/^0[0-7]+$/.test(part)) v = parseInt(part.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(part)) v = Number(part);
    else return null;
    if (!Number.isFinite(v)) return null;
    nums.push(v);
  }
  const last = nums.pop();
  if (last === undefined) return null;
  for (const n of nums) if (n > 255) return null;
  if (last >= 256 ** (4 - nums.length)) return null;
  let out = last;
  nums.forEach((n, i) => {
    out += n * 256 ** (3 - i);
  });
  return out >>> 0;
}

function ipv4ToString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses an IPv6 address (no brackets, optional %zone, optional trailing dotted quad) to 128 bits. */
function parseIPv6(ip: string): bigint | null {
  const noZone = ip.split('%')[0] ?? '';
  if (isIP(noZone) !== 6) return null;
  let s = noZone.toLowerCase();
  // Trailing embedded IPv4 (::ffff:1.2.3.4) becomes two hex groups.
  const v4match = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4match) {
    const v4 = parseIPv4Strict(v4match[2] ?? '');
    if (v4 === null) return null;
    s = `${v4match[1] ?? ''}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  let groups: string[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...Array<string>(missing).fill('0'), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  let out = 0n;
  for (const g of groups) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
    out = (out << 16n) | BigInt(parseInt(g, 16));
  }
  return out;
}

/** Strips the brackets a URL puts around an IPv6 literal. */
function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

// ---------------------------------------------------------------------------------------------
// Classification

interface V4Range {
  net: number;
  prefix: number;
  cls: AddressClass;
}

function v4(cidr: string, cls: AddressClass): V4Range {
  const [a, p] = cidr.split('/');
  return { net: parseIPv4Strict(a ?? '') ?? 0, prefix: Number(p), cls };
}

// Most specific first (the first match wins). Based on the IANA IPv4 special-purpose registry.
const V4_RANGES: V4Range[] = [
  v4('0.0.0.0/32', 'unspecified'),
  v4('255.255.255.255/32', 'broadcast'),
  v4('0.0.0.0/8', 'reserved'), // "this network"
  v4('10.0.0.0/8', 'private'),
  v4('100.64.0.0/10', 'cgnat'),
  v4('127.0.0.0/8', 'loopback'),
  v4('169.254.0.0/16', 'link-local'),
  v4('172.16.0.0/12', 'private'),
  v4('192.0.0.0/24', 'reserved'), // IETF protocol assignments (incl. DS-Lite, NAT64 discovery)
  v4('192.0.2.0/24', 'documentation'),
  v4('192.88.99.0/24', 'reserved'), // deprecated 6to4 relay anycast
  v4('192.168.0.0/16', 'private'),
  v4('198.18.0.0/15', 'benchmarking'),
  v4('198.51.100.0/24', 'documentation'),
  v4('203.0.113.0/24', 'documentation'),
  v4('224.0.0.0/4', 'multicast'),
  v4('240.0.0.0/4', 'reserved'),
];

function inV4(n: number, r: V4Range): boolean {
  if (r.prefix === 0) return true;
  const mask = (0xffffffff << (32 - r.prefix)) >>> 0;
  return (n & mask) >>> 0 === (r.net & mask) >>> 0;
}

function classifyV4(n: number): AddressClass {
  for (const r of V4_RANGES) if (inV4(n, r)) return r.cls;
  return 'public';
}

interface V6Range {
  net: bigint;
  prefix: number;
  cls: AddressClass | 'embedded-v4';
}

function v6(cidr: string, cls: V6Range['cls']): V6Range {
  const [a, p] = cidr.split('/');
  return { net: parseIPv6(a ?? '') ?? 0n, prefix: Number(p), cls };
}

function inV6(n: bigint, net: bigint, prefix: number): boolean {
  if (prefix === 0) return true;
  const shift = BigInt(128 - prefix);
  return n >> shift === net >> shift;
}

// Most specific first. Based on the IANA IPv6 special-purpose registry. 'embedded-v4' means the
// low 32 bits (or, for 6to4, bits 16..47) carry an IPv4 address that decides the class.
const V6_RANGES: V6Range[] = [
  v6('::/128', 'unspecified'),
  v6('::1/128', 'loopback'),
  v6('::ffff:0:0/96', 'embedded-v4'), // IPv4-mapped
  v6('::ffff:0:0:0/96', 'embedded-v4'), // SIIT IPv4-translated
  v6('::/96', 'embedded-v4'), // deprecated IPv4-compatible
  v6('64:ff9b::/96', 'embedded-v4'), // NAT64 well-known prefix
  v6('64:ff9b:1::/48', 'private'), // local-use NAT64
  v6('100::/64', 'reserved'), // discard-only
  v6('2001::/32', 'tunnel'), // Teredo
  v6('2001:2::/48', 'benchmarking'),
  v6('2001:db8::/32', 'documentation'),
  v6('2001::/23', 'reserved'), // IETF protocol assignments (ORCHID, AMT, AS112...)
  v6('2002::/16', 'embedded-v4'), // 6to4
  v6('3fff::/20', 'documentation'),
  v6('5f00::/16', 'reserved'), // SRv6 SIDs
  v6('fc00::/7', 'private'), // unique local
  v6('fe80::/10', 'link-local'),
  v6('fec0::/10', 'private'), // deprecated site-local
  v6('ff00::/8', 'multicast'),
];

/** The IPv4 address inside an IPv6 transition address, or null if `n` carries none. */
function embeddedV4(n: bigint, range: V6Range): number | null {
  if (range.prefix === 16) return Number((n >> 80n) & 0xffffffffn); // 6to4: 2002:AABB:CCDD::
  return Number(n & 0xffffffffn);
}

function classifyV6(n: bigint): AddressClass {
  for (const r of V6_RANGES) {
    if (!inV6(n, r.net, r.prefix)) continue;
    if (r.cls !== 'embedded-v4') return r.cls;
    const inner = embeddedV4(n, r);
    if (inner === null) return 'reserved';
    const cls = classifyV4(inner);
    // An IPv4-compatible (::a.b.c.d) address with a public inner address is still deprecated.
    if (cls === 'public' && r.prefix === 96 && r.net === 0n) return 'reserved';
    return cls;
  }
  // Only 2000::/3 is allocated global unicast.
  return inV6(n, 0x2000n << 112n, 3) ? 'public' : 'reserved';
}

/**
 * Classifies an IP address (IPv4 in any inet_aton spelling, or IPv6 with or without brackets).
 * Returns 'invalid' for anything that is not an IP address.
 */
export function classifyAddress(ip: string): AddressClass {
  const s = unbracket(ip.trim());
  if (s.includes(':')) {
    const n = parseIPv6(s);
    return n === null ? 'invalid' : classifyV6(n);
  }
  const n = parseIPv4Loose(s);
  return n === null ? 'invalid' : classifyV4(n);
}

/** True when `host` (possibly bracketed, possibly an odd IPv4 spelling) is an IP literal. */
export function isIpLiteral(host: string): boolean {
  const s = unbracket(host.trim());
  return s.includes(':') ? parseIPv6(s) !== null : parseIPv4Loose(s) !== null;
}

/** Canonical text of an IP literal (dotted quad for IPv4), or null if `host` is not one. */
export function canonicalIp(host: string): string | null {
  const s = unbracket(host.trim());
  if (s.includes(':')) return parseIPv6(s) === null ? null : (s.split('%')[0] ?? s).toLowerCase();
  const n = parseIPv4Loose(s);
  return n === null ? null : ipv4ToString(n);
}

// ---------------------------------------------------------------------------------------------
// CIDR

export interface Cidr {
  family: 4 | 6;
  /** Network bits, 32-bit for IPv4 and 128-bit for IPv6. */
  network: bigint;
  prefix: number;
  text: string;
}

/** Parses `a.b.c.d/n`, `v6/n` or a bare address (a /32 or /128). Throws on malformed input. */
export function parseCidr(cidr: string): Cidr {
  const [addr = '', prefixText, extra] = cidr.trim().split('/');
  if (extra !== undefined) throw new Error(`invalid CIDR: ${cidr}`);
  const a = unbracket(addr);
  if (a.includes(':')) {
    const n = parseIPv6(a);
    const prefix = prefixText === undefined ? 128 : Number(prefixText);
    if (n === null || !Number.isInteger(prefix) || prefix < 0 || prefix > 128 || prefixText === '') {
      throw new Error(`invalid CIDR: ${cidr}`);
    }
    const shift = BigInt(128 - prefix);
    return { family: 6, network: (n >> shift) << shift, prefix, text: cidr };
  }
  const n = parseIPv4Strict(a);
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (n === null || !Number.isInteger(prefix) || prefix < 0 || prefix > 32 || prefixText === '') {
    throw new Error(`invalid CIDR: ${cidr}`);
  }
  const shift = BigInt(32 - prefix);
  return { family: 4, network: (BigInt(n) >> shift) << shift, prefix, text: cidr };
}

/** True when `ip` lies inside `cidr`. IPv4-mapped IPv6 addresses match IPv4 CIDRs and vice versa. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const s = unbracket(ip.trim());
  let v4n: number | null = null;
  let v6n: bigint | null = null;
  if (s.includes(':')) {
    v6n = parseIPv6(s);
    if (v6n !== null && v6n >> 32n === 0xffffn) v4n = Number(v6n & 0xffffffffn);
  } else {
    v4n = parseIPv4Loose(s);
    if (v4n !== null) v6n = (0xffffn << 32n) | BigInt(v4n);
  }
  if (cidr.family === 4) {
    if (v4n === null) return false;
    const shift = BigInt(32 - cidr.prefix);
    return BigInt(v4n) >> shift === cidr.network >> shift;
  }
  if (v6n === null) return false;
  return inV6(v6n, cidr.network, cidr.prefix);
}

// ---------------------------------------------------------------------------------------------
// Policy

export interface OutboundPolicyConfig {
  /** CIDRs opened even though the default refuses them, e.g. '127.0.0.1/32'. */
  allowNetworks?: string[];
  /** When non-empty, only these domains (exact, or `*.example.com` = any subdomain) are allowed. */
  allowDomains?: string[];
  /** Refused domains (same syntax); the block list wins over the allow list. */
  blockDomains?: string[];
}

/** Host names that always mean "this machine". */
export function isLocalhostName(name: string): boolean {
  const n = normalizeHostname(name);
  return n === 'localhost' || n.endsWith('.localhost') || n === 'localhost.localdomain';
}

/** Lower-cases a host name, strips URL brackets and one trailing dot. */
export function normalizeHostname(host: string): string {
  let h = unbracket(host.trim()).toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

function matchesDomain(pattern: string, host: string): boolean {
  const p = normalizeHostname(pattern);
  if (p.startsWith('*.')) {
    const base = p.slice(2);
    return host.endsWith(`.${base}`);
  }
  return host === p;
}

export class OutboundPolicy {
  readonly #allowNetworks: Cidr[];
  readonly #allowDomains: string[];
  readonly #blockDomains: string[];

  constructor(config: OutboundPolicyConfig = {}) {
    this.#allowNetworks = (config.allowNetworks ?? []).map(parseCidr);
    this.#allowDomains = config.allowDomains ?? [];
    this.#blockDomains = config.blockDomains ?? [];
  }

  /** True when `ip` is inside one of the operator's allowNetworks. */
  isAllowedNetwork(ip: string): boolean {
    return this.#allowNetworks.some((c) => cidrContains(c, ip));
  }

  /**
   * Decides on an IP address: allowed when it is public unicast or inside allowNetworks.
   * Accepts odd IPv4 spellings and bracketed IPv6.
   */
  checkAddress(ip: string): PolicyDecision {
    const cls = classifyAddress(ip);
    if (cls === 'invalid') return { ok: false, reason: `not an IP address: ${ip}` };
    const canonical = canonicalIp(ip) ?? ip;
    if (this.isAllowedNetwork(canonical)) return { ok: true };
    if (cls === 'public') return { ok: true };
    return { ok: false, reason: `address ${canonical} is ${cls} and not in allowNetworks` };
  }

  /**
   * Decides on a URL host before any DNS lookup: domain allow/block lists, literal IP addresses
   * (checked right here, since no lookup happens for them) and the `localhost` family, which is
   * refused unless allowNetworks opens something for it (the caller must then check every
   * resolved address with `checkResolvedAddress`). Names like `*.internal` or `*.local` are left
   * to the address check: they resolve to private or link-local addresses, which are refused.
   */
  checkHost(hostname: string): PolicyDecision {
    const host = normalizeHostname(hostname);
    if (host === '') return { ok: false, reason: 'empty host name' };
    if (isIpLiteral(host)) {
      const decision = this.checkAddress(host);
      if (!decision.ok) return decision;
      // Domain allow lists name domains; an IP literal is allowed only when no allow list is set
      // or the literal itself is listed.
      const ip = canonicalIp(host) ?? host;
      if (this.#blockDomains.some((p) => normalizeHostname(p) === ip)) {
        return { ok: false, reason: `host ${ip} is blocked` };
      }
      if (this.#allowDomains.length > 0 && !this.#allowDomains.some((p) => normalizeHostname(p) === ip)) {
        return { ok: false, reason: `host ${ip} is not in the allowed domains` };
      }
      return { ok: true };
    }
    if (this.#blockDomains.some((p) => matchesDomain(p, host))) {
      return { ok: false, reason: `domain ${host} is blocked` };
    }
    if (this.#allowDomains.length > 0 && !this.#allowDomains.some((p) => matchesDomain(p, host))) {
      return { ok: false, reason: `domain ${host} is not in the allowed domains` };
    }
    if (isLocalhostName(host) && this.#allowNetworks.length === 0) {
      return { ok: false, reason: `host ${host} refers to this machine` };
    }
    return { ok: true };
  }

  /** Decides on one address that `hostname` resolved to. */
  checkResolvedAddress(hostname: string, ip: string): PolicyDecision {
    if (isLocalhostName(hostname) && !this.isAllowedNetwork(ip)) {
      return {
        ok: false,
        reason: `host ${normalizeHostname(hostname)} resolves to ${ip}, not in allowNetworks`,
      };
    }
    const d = this.checkAddress(ip);
    return d.ok
      ? d
      : { ok: false, reason: `host ${normalizeHostname(hostname)} resolves to a refused ${d.reason}` };
  }
}
