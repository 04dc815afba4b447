// File-name hygiene shared by the download engines and the file tree. Pure code.

const MAX_NAME_BYTES = 255;
const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$/i;
// C0 and C1 control characters, DEL, and characters Windows refuses in names.
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f/\\:*?"<>|]/g;
// Bidirectional formatting characters: a remote name could use them to disguise its extension
// ("invoice\u202Efdp.exe" displays as "invoiceexe.pdf"). Dropped, never displayed.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Cuts `s` to at most `maxBytes` UTF-8 bytes without splitting a code point. */
function truncateUtf8(s: string, maxBytes: number): string {
  if (utf8Length(s) <= maxBytes) return s;
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const len = utf8Length(ch);
    if (bytes + len > maxBytes) break;
    out += ch;
    bytes += len;
  }
  return out;
}

/**
 * Makes one path component safe to create on any common file system: no `/` or `\` (nor the other
 * characters Windows forbids: `: * ? " < > |`, replaced by `_`), no control characters, NUL or
 * bidirectional overrides, no
 * leading/trailing dots or spaces, no `.`/`..`-only names, Windows device names (CON, NUL, COM1...)
 * get a `_` suffix, and at most 255 UTF-8 bytes, keeping the extension when it is short. Returns
 * `download` when nothing usable is left.
 */
export function sanitizeFileName(name: string, fallback = 'download'): string {
  let s = name
    .normalize('NFC')
    .replace(BIDI_CONTROLS, '')
    .replace(FORBIDDEN, (ch) => {
      const code = ch.charCodeAt(0);
      return code < 0x20 || (code >= 0x7f && code <= 0x9f) ? '' : '_';
    });
  s = s.replace(/^[\s.]+|[\s.]+$/g, '');
  if (s === '' || /^\.+$/.test(s)) return fallback;
  // Windows reserves device names whatever follows the first dot (NUL.tar.gz too).
  const firstDot = s.indexOf('.');
  const stem = firstDot > 0 ? s.slice(0, firstDot) : s;
  if (WINDOWS_RESERVED.test(stem.trimEnd())) s = `${stem}_${s.slice(stem.length)}`;
  if (utf8Length(s) > MAX_NAME_BYTES) {
    const d = s.lastIndexOf('.');
    const extension = d > 0 ? s.slice(d) : '';
    if (extension !== '' && utf8Length(extension) <= 32) {
      const base = truncateUtf8(s.slice(0, d), MAX_NAME_BYTES - utf8Length(extension));
      s = `${base.replace(/[\s.]+$/, '')}${extension}`;
    } else {
      s = truncateUtf8(s, MAX_NAME_BYTES).replace(/[\s.]+$/, '');
    }
    if (s === '' || /^\.+$/.test(s)) return fallback;
  }
  return s;
}
