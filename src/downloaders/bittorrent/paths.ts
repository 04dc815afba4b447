// Turns the file paths a torrent carries (untrusted bytes) into safe, unique relative paths.
// Pure code.
//
// Every segment is split again on `/` and `\`, `.`/`..`/empty segments are dropped, a leading
// `/` or drive letter cannot survive (the `:` becomes `_`), and each remaining segment goes
// through sanitizeFileName (control characters and NUL removed, Windows device names suffixed,
// 255-byte cap). Collisions — exact or differing only in case, or a file named like a folder
// another file lives in — get ` (1)`, ` (2)`... before the extension.

import { sanitizeFileName } from '../../domain/file-name.ts';

/** A relative path longer than this many UTF-8 bytes keeps only its root and last segment. */
const MAX_PATH_BYTES = 1024;
const MAX_DEPTH = 32;

function segmentsOf(raw: string[]): string[] {
  const out: string[] = [];
  for (const part of raw) {
    for (const piece of part.split(/[/\\]/)) {
      if (piece === '' || piece === '.' || piece === '..') continue;
      const s = sanitizeFileName(piece, '');
      if (s !== '') out.push(s);
    }
  }
  return out;
}

function withSuffix(name: string, n: number): string {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  return sanitizeFileName(`${stem} (${n})${ext}`);
}

interface Node {
  kind: 'dir' | 'file';
  children: Map<string, Node>;
  /** The spelling used for this entry (keys are case-folded). */
  name: string;
}

function key(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

/**
 * Safe relative paths ('/'-separated) for a torrent's files, in torrent order.
 * `name` is the torrent's name; `files` holds each file's raw path segments (for a single-file
 * torrent pass `multi = false` and one entry, whose path is ignored: the name is the file name).
 * Multi-file torrents keep their name as the top folder.
 */
export function sanitizeTorrentPaths(name: string, files: string[][], multi: boolean): string[] {
  const rootName = sanitizeFileName(name, 'torrent');
  const root: Node = { kind: 'dir', children: new Map(), name: '' };
  const out: string[] = [];
  files.forEach((raw, index) => {
    let segs: string[];
    if (!multi) {
      segs = [rootName];
    } else {
      const inner = segmentsOf(raw);
      segs = [rootName, ...(inner.length > 0 ? inner : [`file ${index + 1}`])];
      if (segs.length > MAX_DEPTH || Buffer.byteLength(segs.join('/')) > MAX_PATH_BYTES) {
        segs = [rootName, segs[segs.length - 1] ?? `file ${index + 1}`];
      }
    }
    const placed: string[] = [];
    let node = root;
    segs.forEach((seg, i) => {
      const last = i === segs.length - 1;
      let candidate = seg;
      for (let n = 1; ; n++) {
        const existing = node.children.get(key(candidate));
        if (existing === undefined) break;
        if (!last && existing.kind === 'dir') break; // share the folder
        candidate = withSuffix(seg, n);
      }
      let next = node.children.get(key(candidate));
      if (next === undefined) {
        next = { kind: last ? 'file' : 'dir', children: new Map(), name: candidate };
        node.children.set(key(candidate), next);
      }
      placed.push(next.name);
      node = next;
    });
    out.push(placed.join('/'));
  });
  return out;
}
