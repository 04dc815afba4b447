// Deriving a download's file name: the user's choice, else Content-Disposition (RFC 6266 with
// RFC 5987 `filename*`), else the last segment of the URL path, else `download`.

import { sanitizeFileName } from '../../domain/file-name.ts';

/** Splits a header value into `;`-separated parameters, honouring quoted strings. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] ?? '';
    if (quoted) {
      if (ch === '\\' && i + 1 < value.length) {
        cur += ch + (value[i + 1] ?? '');
        i++;
        continue;
      }
      if (ch === '"') quoted = false;
      cur += ch;
    } else if (ch === '"') {
      quoted = true;
      cur += ch;
    } else if (ch === ';') {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

function unquote(v: string): string {
  const s = v.trim();
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) return s.slice(1, -1).replace(/\\(.)/g, '$1');
  return s;
}

/** Header strings arrive latin1-decoded; many servers send raw UTF-8 in `filename="..."`. */
function repairUtf8(s: string): string {
  if (!/[\u0080-\u00ff]/.test(s) || /[^\u0000-\u00ff]/.test(s)) return s;
  const decoded = Buffer.from(s, 'latin1').toString('utf8');
  return decoded.includes('\ufffd') ? s : decoded;
}

/** Decodes an RFC 5987 ext-value (`UTF-8''na%C3%AFve.txt`), or null when malformed. */
function decodeExtValue(v: string): string | null {
  const m = /^([\w!#$%&+^`{}~-]+)'[^']*'(.*)$/.exec(unquote(v));
  if (!m) return null;
  const charset = (m[1] ?? '').toLowerCase();
  const encoded = m[2] ?? '';
  try {
    if (charset === 'utf-8') return decodeURIComponent(encoded);
    if (charset === 'iso-8859-1' || charset === 'latin1') {
      return encoded.replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    }
  } catch {
    return null;
  }
  return null;
}

/** The file name a Content-Disposition header suggests (unsanitised), or null. */
export function parseContentDisposition(header: string | undefined): string | null {
  if (header === undefined || header.trim() === '') return null;
  let plain: string | null = null;
  let extended: string | null = null;
  for (const param of splitParams(header)) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    const key = param.slice(0, eq).trim().toLowerCase();
    const value = param.slice(eq + 1).trim();
    if (key === 'filename*') extended ??= decodeExtValue(value);
    else if (key === 'filename') plain ??= repairUtf8(unquote(value));
  }
  const name = extended ?? plain;
  return name === null || name.trim() === '' ? null : name;
}

/** Last non-empty path segment of a URL, percent-decoded, or null. */
export function nameFromUrl(url: URL): string | null {
  const segments = url.pathname.split('/').filter((s) => s !== '');
  const last = segments.at(-1);
  if (last === undefined) return null;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** Picks and sanitises the name: explicit, else Content-Disposition, else URL, else `download`. */
export function deriveFileName(input: {
  filename?: string | undefined;
  contentDisposition?: string | undefined;
  url: URL;
}): string {
  const candidates = [
    input.filename,
    parseContentDisposition(input.contentDisposition),
    nameFromUrl(input.url),
  ];
  for (const c of candidates) {
    if (c === undefined || c === null) continue;
    const s = sanitizeFileName(c, '');
    if (s !== '') return s;
  }
  return 'download';
}
