// A small, strict bencode codec (BEP 3). Byte strings decode to Buffers (torrent paths and names
// are bytes, not always UTF-8); dictionaries decode to plain objects whose keys are the byte
// strings read as latin1 (binary), so any key survives a round trip. The decoder also reports the
// exact byte span of the top-level `info` dictionary, whose SHA-1 is the info-hash: re-encoding a
// decoded dictionary is only equal to the original when the original was canonical, so the hash
// must come from the original bytes.

export type BValue = number | bigint | Buffer | BValue[] | BDict;
export interface BDict {
  [key: string]: BValue;
}

/** A value encoded verbatim (already-bencoded bytes, e.g. an original `info` dictionary). */
export class BRaw {
  readonly bytes: Buffer;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
}

export type BEncodable =
  number | bigint | string | Buffer | Uint8Array | BRaw | BEncodable[] | BEncodableDict;
export interface BEncodableDict {
  [key: string]: BEncodable | undefined;
}

export class BencodeError extends Error {}

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeInto(value: BEncodable, out: Buffer[]): void {
  if (value instanceof BRaw) {
    out.push(value.bytes);
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new BencodeError(`cannot bencode non-integer ${value}`);
    out.push(Buffer.from(`i${value}e`));
  } else if (typeof value === 'bigint') {
    out.push(Buffer.from(`i${value.toString()}e`));
  } else if (typeof value === 'string') {
    const b = Buffer.from(value, 'utf8');
    out.push(Buffer.from(`${b.length}:`), b);
  } else if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    out.push(Buffer.from(`${value.length}:`), Buffer.from(value));
  } else if (Array.isArray(value)) {
    out.push(Buffer.from('l'));
    for (const v of value) encodeInto(v, out);
    out.push(Buffer.from('e'));
  } else {
    // Keys are raw byte strings compared as bytes (BEP 3): keep them as latin1 throughout.
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort((a, b) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1')));
    out.push(Buffer.from('d'));
    for (const k of keys) {
      const kb = Buffer.from(k, 'latin1');
      out.push(Buffer.from(`${kb.length}:`), kb);
      encodeInto(value[k] as BEncodable, out);
    }
    out.push(Buffer.from('e'));
  }
}

/**
 * Encodes a value. Strings are written as UTF-8; dictionary keys as latin1 bytes (so keys read by
 * `decode` round-trip; plain ASCII keys are the same either way). Keys are sorted.
 */
export function encode(value: BEncodable): Buffer {
  const out: Buffer[] = [];
  encodeInto(value, out);
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------------
// Decoding

export interface DecodeResult {
  value: BValue;
  /** Byte span [start, end) of the top-level dictionary's `info` value, when there is one. */
  infoSpan: [number, number] | null;
}

const MAX_DEPTH = 64;

class Decoder {
  readonly buf: Buffer;
  pos = 0;
  infoSpan: [number, number] | null = null;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  fail(message: string): never {
    throw new BencodeError(`${message} at byte ${this.pos}`);
  }

  value(depth: number): BValue {
    if (depth > MAX_DEPTH) this.fail('nesting too deep');
    const c = this.buf[this.pos];
    if (c === undefined) this.fail('unexpected end of data');
    if (c === 0x69) return this.integer(); // i
    if (c === 0x6c) return this.list(depth); // l
    if (c === 0x64) return this.dict(depth); // d
    if (c >= 0x30 && c <= 0x39) return this.bytes();
    return this.fail(`unexpected byte 0x${c.toString(16)}`);
  }

  integer(): number | bigint {
    const end = this.buf.indexOf(0x65, this.pos); // e
    if (end < 0) this.fail('unterminated integer');
    const text = this.buf.toString('latin1', this.pos + 1, end);
    if (!/^(0|-?[1-9][0-9]*)$/.test(text)) this.fail(`bad integer "${text.slice(0, 32)}"`);
    this.pos = end + 1;
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : BigInt(text);
  }

  bytes(): Buffer {
    const colon = this.buf.indexOf(0x3a, this.pos); // :
    if (colon < 0 || colon - this.pos > 12) this.fail('bad string length');
    const text = this.buf.toString('latin1', this.pos, colon);
    if (!/^(0|[1-9][0-9]*)$/.test(text)) this.fail('bad string length');
    const len = Number(text);
    const start = colon + 1;
    if (start + len > this.buf.length) this.fail('string runs past the end');
    this.pos = start + len;
    return this.buf.subarray(start, start + len);
  }

  list(depth: number): BValue[] {
    this.pos++;
    const out: BValue[] = [];
    while (this.buf[this.pos] !== 0x65) {
      if (this.pos >= this.buf.length) this.fail('unterminated list');
      out.push(this.value(depth + 1));
    }
    this.pos++;
    return out;
  }

  dict(depth: number): BDict {
    this.pos++;
    const out: BDict = Object.create(null) as BDict;
    while (this.buf[this.pos] !== 0x65) {
      if (this.pos >= this.buf.length) this.fail('unterminated dictionary');
      const c = this.buf[this.pos];
      if (c === undefined || c < 0x30 || c > 0x39) this.fail('dictionary key is not a string');
      const key = this.bytes().toString('latin1');
      const start = this.pos;
      const v = this.value(depth + 1);
      if (depth === 0 && key === 'info' && this.infoSpan === null) this.infoSpan = [start, this.pos];
      out[key] = v;
    }
    this.pos++;
    return out;
  }
}

/** Decodes one bencoded value that must span the whole buffer. Throws BencodeError. */
export function decodeWithSpans(buf: Buffer): DecodeResult {
  const d = new Decoder(buf);
  const value = d.value(0);
  if (d.pos !== buf.length) d.fail('trailing data');
  return { value, infoSpan: d.infoSpan };
}

export function decode(buf: Buffer): BValue {
  return decodeWithSpans(buf).value;
}

// ---------------------------------------------------------------------------------------------
// Accessors for decoded data

export function isDict(v: BValue | undefined): v is BDict {
  return typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && !Array.isArray(v);
}

export function asBuffer(v: BValue | undefined): Buffer | undefined {
  return Buffer.isBuffer(v) ? v : undefined;
}

export function asInt(v: BValue | undefined): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

export function asList(v: BValue | undefined): BValue[] | undefined {
  return Array.isArray(v) ? v : undefined;
}
