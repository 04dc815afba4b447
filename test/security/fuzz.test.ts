// Property-based fuzzing of every endpoint of both faces against a real server process: malformed
// JSON bodies, query strings and headers, generated from a seeded PRNG (FERRY_FUZZ_SEED replays a
// run). The property: a hostile request gets a client error in the face's own envelope — never
// an HTTP 5xx, never a Cloudreve server code (-1, 5xxxx) — and the process stays up.
//
// No request leads anywhere but 127.0.0.1: the server runs without --allow-network, with a domain
// allow list naming a single unused host (so no fuzzed source ever passes to DNS), and without a
// BitTorrent engine (so no magnet reaches a DHT).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, uploadFile, type TestServer } from '../helpers/server.ts';
import {
  cloudreveViolation,
  pathViolation,
  rawRequest,
  Rng,
  type RawRequest,
  type RawResponse,
} from './helpers.ts';

const SEED = Number(process.env.FERRY_FUZZ_SEED ?? 20240607);
const CONCURRENCY = 8;

let server: TestServer;
let access = '';
let apiToken = '';
let refresh = '';
let contentPath = '';
let archivePath = '';
let uploadSession = '';
const counts = new Map<string, number>();
const failures: string[] = [];

// ---------------------------------------------------------------------------------------------
// Generators (JSON text, so keys like __proto__ really reach the server's parser)

const NASTY_STRINGS = [
  '',
  ' ',
  '\\u0000',
  'a\\u0000b',
  '\\u0001\\u001f\\u007f',
  '\\r\\nX-Injected: 1',
  '\\ud800',
  '\\udfff\\ud800',
  '\\u202etxt.exe',
  '\\uff0e\\uff0e\\uff0f\\uff0e\\uff0e\\uff0fetc',
  'e\\u0301\\u0301\\u0301',
  '../../../../etc/passwd',
  '..\\\\..\\\\windows',
  '/etc/passwd',
  '%00',
  '%2e%2e%2f',
  'cloudreve://my/../../..',
  'cloudreve://my/%2e%2e/%2e%2e',
  'cloudreve://my/a%00b',
  'cloudreve://a:b@my/x',
  'cloudreve://share/x',
  'cloudreve://trash',
  'cloudreve://my/%ED%A0%80',
  'cloudreve://my/%',
  'http://127.0.0.1/x',
  'http://[::1]/x',
  'http://169.254.169.254/latest/meta-data/',
  'file:///etc/passwd',
  'magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567',
  'javascript:alert(1)',
  '__proto__',
  'constructor',
  'NaN',
  'Infinity',
  '-1',
  '1e309',
  '0x10',
  'true',
  'null',
  'sha256:zz',
  'md5:' + '0'.repeat(32),
  'fry_' + 'A'.repeat(43),
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.',
  '\\"\\\\',
  '😀'.repeat(50),
];
const NUMBERS = [
  '0',
  '-0',
  '-1',
  '1.5',
  '1e308',
  '-1e308',
  '9007199254740993',
  '4294967296',
  '1e-400',
  '123456789012345678901234567890',
];

function jsonString(rng: Rng): string {
  const r = rng.int(10);
  if (r === 0) return `"${'A'.repeat(rng.pick([300, 5000, 70_000, 300_000]))}"`;
  if (r === 1) return `"${Array.from({ length: 20 }, () => rng.pick(NASTY_STRINGS)).join('')}"`;
  return `"${rng.pick(NASTY_STRINGS)}"`;
}

function jsonValue(rng: Rng, depth = 0): string {
  const r = rng.int(depth > 3 ? 5 : 9);
  switch (r) {
    case 0:
    case 1:
      return jsonString(rng);
    case 2:
      return rng.pick(NUMBERS);
    case 3:
      return rng.pick(['true', 'false', 'null']);
    case 4:
      return rng.pick(['[]', '{}', '""']);
    case 5:
      return `[${Array.from({ length: rng.int(4) }, () => jsonValue(rng, depth + 1)).join(',')}]`;
    case 6:
      return jsonObject(rng, depth + 1);
    case 7:
      return `[${Array.from({ length: rng.pick([3001, 20_000]) }, () => '"cloudreve://my/x"').join(',')}]`;
    default:
      return `{"__proto__":{"isAdmin":true,"is_admin":1,"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}`;
  }
}

function jsonObject(rng: Rng, depth = 0): string {
  const keys = [
    '__proto__',
    'constructor',
    'prototype',
    'uri',
    'uris',
    'name',
    'a',
    '',
    '\\u0000',
    'toString',
  ];
  return `{${Array.from({ length: rng.int(4) }, () => `"${rng.pick(keys)}":${jsonValue(rng, depth + 1)}`).join(',')}}`;
}

/** A body for `template`: mostly mutated fields, sometimes something else entirely. */
function fuzzBody(rng: Rng, template: Record<string, string>): { body: Buffer; contentType: string | null } {
  const contentType = rng.bool(0.85)
    ? 'application/json'
    : rng.pick([
        null,
        'text/plain',
        'application/json; charset=latin1',
        'application/json; charset=utf-16',
        'application/JSON;;;',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        ';;;===',
        'application/json, text/html',
      ]);
  const mode = rng.int(10);
  let text: string;
  if (mode < 5) {
    const fields: string[] = [];
    for (const [k, v] of Object.entries(template)) {
      const m = rng.int(4);
      if (m === 0) continue; // missing
      fields.push(`"${k}":${m === 1 ? v : jsonValue(rng)}`);
    }
    if (rng.bool(0.4))
      fields.push(`"${rng.pick(['__proto__', 'constructor', 'extra', 'is_admin'])}":${jsonValue(rng)}`);
    text = `{${fields.join(',')}}`;
  } else if (mode === 5) {
    text = jsonValue(rng);
  } else if (mode === 6) {
    const depth = rng.pick([64, 1000, 50_000]);
    text = rng.bool()
      ? '['.repeat(depth) + ']'.repeat(depth)
      : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
  } else if (mode === 7) {
    const valid = `{${Object.entries(template)
      .map(([k, v]) => `"${k}":${v}`)
      .join(',')}}`;
    const cut = rng.int(valid.length);
    text = rng.bool()
      ? valid.slice(0, cut)
      : valid.slice(0, cut) + rng.pick(['}', ']', ',', '"', '\\', '\u0000']) + valid.slice(cut);
  } else if (mode === 8) {
    // invalid UTF-8 inside a string, or a BOM, or a huge body beyond the 1 MiB limit
    const valid = Buffer.from(
      `{${Object.entries(template)
        .map(([k, v]) => `"${k}":${v}`)
        .join(',')}}`,
    );
    const pick = rng.int(4);
    if (pick === 3) return { body: Buffer.alloc(1024 * 1024 + 10, 0x20), contentType };
    const bad = [Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80])][
      pick
    ]!;
    const at = Math.max(1, valid.indexOf('"', 2) + 1);
    return { body: Buffer.concat([valid.subarray(0, at), bad, valid.subarray(at)]), contentType };
  } else {
    text = rng.pick([
      '',
      'null',
      '0',
      '"x"',
      '[]',
      'undefined',
      'NaN',
      '{"a":1}{"b":2}',
      '\uFEFF{}',
      '{"a":1,}',
      "{'a':1}",
    ]);
  }
  return { body: Buffer.from(text), contentType };
}

const AUTH_GARBAGE = (rng: Rng): string =>
  rng.pick([
    'Bearer',
    'Bearer ',
    'Bearer a b',
    'bearer ' + 'x'.repeat(8000),
    'Basic !!!',
    'Basic ' + Buffer.from(':').toString('base64'),
    'Basic ' + Buffer.from([0xff, 0x00, 0x3a, 0xfe]).toString('base64'),
    'Basic ' + Buffer.from('x:fry_nope').toString('base64'),
    'Digest username="admin"',
    'Bearer fry_',
    'Bearer fry_' + 'A'.repeat(43),
    'Bearer eyJ.eyJ.',
    'Bearer eyJhbGciOiJub25lIn0.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwic3ViIjoibHBUbCJ9.',
    'Bearer ..',
    'Bearer Cr abc:def',
    'Negotiate YII=',
    `Bearer ${refresh}`,
    `Bearer ${access}x`,
    `Bearer ${access.slice(0, -3)}`,
    '\u00ff\u00fe',
  ]);

const RANGES = [
  'bytes=',
  'bytes=-',
  'bytes=5-1',
  'bytes=0-0,' + '1-1,'.repeat(500),
  'bytes=99999999999999999999-',
  'bytes=-99999999999999999999',
  'items=0-1',
  'bytes=-0',
  'bytes=0-',
  'bytes=a-b',
  'bytes = 0 - 1',
  'bytes=1-2,,,,',
  'bytes=0-1, 0-1, 0-1',
];
const CONDITIONALS: Array<[string, string]> = [
  ['if-match', '*'],
  ['if-match', 'W/"x"'],
  ['if-match', '"'],
  ['if-none-match', '*'],
  ['if-none-match', '"' + 'x'.repeat(5000)],
  ['if-modified-since', 'Mon, 99 Foo 9999 99:99:99 GMT'],
  ['if-modified-since', 'Sat, 01 Jan 2000 00:00:00 GMT'],
  ['if-unmodified-since', 'Thu, 01 Jan 1970 00:00:00 GMT'],
  ['if-unmodified-since', 'garbage'],
  ['if-range', 'W/"x"'],
  ['if-range', 'Thu, 01 Jan 1970 00:00:00 GMT'],
  ['if-range', '"'],
];

function fuzzHeaders(rng: Rng, auth: string | null): Array<[string, string]> {
  const headers: Array<[string, string]> = [];
  const r = rng.int(10);
  if (r < 5 && auth) headers.push(['Authorization', auth]);
  else if (r < 8) headers.push(['Authorization', AUTH_GARBAGE(rng)]);
  if (rng.bool(0.3)) headers.push(['Range', rng.pick(RANGES)]);
  if (rng.bool(0.3)) headers.push(rng.pick(CONDITIONALS));
  if (rng.bool(0.1)) headers.push(['X-Cr-Correlation-Id', rng.pick(['x', '0'.repeat(36), '../../'])]);
  if (rng.bool(0.05)) headers.push(['X-Huge', 'h'.repeat(12_000)]);
  if (rng.bool(0.05)) headers.push(['Accept', 'text/event-stream']);
  if (rng.bool(0.05)) headers.push(['X-Forwarded-For', '10.0.0.1, 127.0.0.1']);
  return headers;
}

const BAD_QUERY_VALUES = [
  '%',
  '%zz',
  '%c0%af',
  '%00',
  '%ff%fe',
  '%ED%A0%80',
  '+',
  'a'.repeat(6000),
  '..%2f..%2f',
  '%2e%2e',
  '__proto__',
  'constructor',
  '-1',
  '1e309',
  'NaN',
  '0x10',
  '[]',
  '{}',
  '',
];

/** A query string from `keys`: duplicates, array syntax, bad escapes, overlong values. */
function fuzzQuery(rng: Rng, keys: Record<string, string>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(keys)) {
    const m = rng.int(7);
    if (m === 0) continue;
    if (m === 1) parts.push(`${k}=${v}`);
    else if (m === 2) parts.push(`${k}=${v}`, `${k}=${rng.pick(BAD_QUERY_VALUES)}`);
    else if (m === 3) parts.push(`${k}[]=${v}`, `${k}[0]=${rng.pick(BAD_QUERY_VALUES)}`);
    else if (m === 4) parts.push(`${k}`);
    else parts.push(`${k}=${rng.pick(BAD_QUERY_VALUES)}`);
  }
  if (rng.bool(0.3))
    parts.push(
      `${rng.pick(['__proto__', 'constructor[prototype]', '__proto__[x]', '&&&', '=', 'a=b=c'])}=${rng.pick(BAD_QUERY_VALUES)}`,
    );
  return parts.length ? `?${parts.join('&')}` : '';
}

// ---------------------------------------------------------------------------------------------
// The endpoint table, from src/http/cloudreve/*.routes.ts and src/http/path-api/routes.ts

interface Endpoint {
  name: string;
  face: 'cloudreve' | 'path';
  method: string;
  path: () => string;
  body?: () => Record<string, string>;
  query?: () => Record<string, string>;
  /** server codes this route returns by design (spec 6.6) */
  allowed?: number[];
  /** only anonymous / garbage credentials (the authenticated route never ends: SSE) */
  noValidAuth?: boolean;
  raw?: boolean;
}

const U = (s: string) => JSON.stringify(s);
const ENDPOINTS: Endpoint[] = [
  { name: 'GET /site/ping', face: 'cloudreve', method: 'GET', path: () => '/api/v4/site/ping' },
  {
    name: 'GET /site/config/basic',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/site/config/basic',
  },
  {
    name: 'GET /site/config/:section',
    face: 'cloudreve',
    method: 'GET',
    path: () =>
      `/api/v4/site/config/${encodeURIComponent(currentRng.pick(['login', 'explorer', 'thumb', 'x'.repeat(70), '%00', '..']))}`,
  },
  {
    name: 'GET /session/prepare',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/session/prepare',
    query: () => ({ email: encodeURIComponent('nobody@example.com') }),
  },
  {
    name: 'GET /session/oauth/app/:id',
    face: 'cloudreve',
    method: 'GET',
    path: () =>
      `/api/v4/session/oauth/app/${encodeURIComponent(currentRng.pick(['x', '%00', 'a'.repeat(200)]))}`,
  },
  {
    name: 'GET /user/info|avatar/:id',
    face: 'cloudreve',
    method: 'GET',
    path: () =>
      `/api/v4/user/${currentRng.pick(['info', 'avatar'])}/${encodeURIComponent(currentRng.pick(['x', '%00', '..', 'a'.repeat(100), '0']))}`,
  },
  { name: 'GET /user/setting', face: 'cloudreve', method: 'GET', path: () => '/api/v4/user/setting' },
  {
    name: 'PATCH /user/setting',
    face: 'cloudreve',
    method: 'PATCH',
    path: () => '/api/v4/user/setting',
    body: () => ({ nick: U('Fuzz') }),
  },
  {
    name: 'GET /file/info',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/file/info',
    query: () => ({
      uri: encodeURIComponent(
        currentRng.pick(['cloudreve://my/f', 'cloudreve://my/f?name=a', 'cloudreve://x']),
      ),
      id: currentRng.pick(['x', '0', 'a'.repeat(64)]),
      extended: 'true',
      folder_summary: 'true',
    }),
  },
  {
    name: 'GET /file/thumb',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/file/thumb',
    query: () => ({ uri: encodeURIComponent('cloudreve://my/f/a.txt') }),
  },
  { name: 'GET /openapi.json', face: 'cloudreve', method: 'GET', path: () => '/api/v4/openapi.json' },
  {
    name: 'POST /session/token',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/session/token',
    body: () => ({
      email: U('nobody@example.com'),
      password: U('wrong-password'),
      captcha: U(''),
      ticket: U(''),
    }),
  },
  {
    name: 'POST /session/token/refresh',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/session/token/refresh',
    body: () => ({ refresh_token: U(refresh) }),
  },
  {
    name: 'DELETE /session/token',
    face: 'cloudreve',
    method: 'DELETE',
    path: () => '/api/v4/session/token',
    body: () => ({ refresh_token: U('x' + refresh) }),
  },
  { name: 'GET /user/me', face: 'cloudreve', method: 'GET', path: () => '/api/v4/user/me' },
  { name: 'GET /user/capacity', face: 'cloudreve', method: 'GET', path: () => '/api/v4/user/capacity' },
  {
    name: 'GET /user/setting/nodes',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/user/setting/nodes',
  },
  {
    name: 'GET /user/setting/tokens',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/user/setting/tokens',
  },
  {
    name: 'POST /user/setting/tokens',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/user/setting/tokens',
    body: () => ({ name: U('fuzz'), expires_in_days: '1' }),
  },
  {
    name: 'DELETE /user/setting/tokens/:id',
    face: 'cloudreve',
    method: 'DELETE',
    path: () =>
      `/api/v4/user/setting/tokens/${encodeURIComponent(currentRng.pick(['999999', '0', '-1', 'abc', '1e3', '9'.repeat(20), '%00', '..']))}`,
  },
  {
    name: 'GET /file',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/file',
    query: () => ({
      uri: encodeURIComponent('cloudreve://my/f'),
      page: '0',
      page_size: '50',
      order_by: 'name',
      order_direction: 'asc',
      next_page_token: currentRng.pick([
        'eyJvIjoxfQ==',
        'eyJvIjotMX0=',
        'eyJvIjoxZTMwOX0=',
        '!!!',
        'bnVsbA==',
      ]),
    }),
  },
  {
    name: 'POST /file/create',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/file/create',
    body: () => ({
      uri: U('cloudreve://my/fz/new'),
      type: U('folder'),
      metadata: '{"a":"b"}',
      err_on_conflict: 'false',
    }),
  },
  {
    name: 'POST /file/rename',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/file/rename',
    body: () => ({ uri: U('cloudreve://my/fz/none'), new_name: U('x') }),
  },
  {
    name: 'POST /file/move',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/file/move',
    body: () => ({ uris: '["cloudreve://my/fz/none"]', dst: U('cloudreve://my/fz'), copy: 'true' }),
  },
  {
    name: 'DELETE /file',
    face: 'cloudreve',
    method: 'DELETE',
    path: () => '/api/v4/file',
    body: () => ({ uris: '["cloudreve://my/fz/none"]', unlink: 'false', skip_soft_delete: 'true' }),
  },
  {
    name: 'PUT /file/upload',
    face: 'cloudreve',
    method: 'PUT',
    path: () => '/api/v4/file/upload',
    body: () => ({
      uri: U('cloudreve://my/fz/up.bin'),
      size: '10',
      policy_id: U('x'),
      last_modified: '1',
      mime_type: U('text/plain'),
      metadata: '{}',
      entity_type: U('version'),
    }),
  },
  {
    name: 'POST /file/upload/:session/:index',
    face: 'cloudreve',
    method: 'POST',
    raw: true,
    path: () =>
      `/api/v4/file/upload/${currentRng.pick([uploadSession, '%00', 'x'.repeat(70), '00000000-0000-0000-0000-000000000000', '..'])}/${currentRng.pick(['0', '1', '-1', '1e3', 'x', '99999999'])}`,
  },
  {
    name: 'DELETE /file/upload',
    face: 'cloudreve',
    method: 'DELETE',
    path: () => '/api/v4/file/upload',
    body: () => ({ id: U('00000000-0000-0000-0000-000000000000'), uri: U('cloudreve://my/fz/up.bin') }),
  },
  {
    name: 'POST /file/url',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/file/url',
    body: () => ({
      uris: '["cloudreve://my/f/a.txt"]',
      download: 'true',
      redirect: 'false',
      entity: U('x'),
      use_primary_site_url: 'false',
      skip_error: 'true',
      archive: 'false',
      no_cache: 'true',
    }),
  },
  {
    name: 'GET/HEAD /file/content/...',
    face: 'cloudreve',
    method: 'GET',
    path: () => {
      const [p, q] = contentPath.split('?') as [string, string];
      const r = currentRng.int(6);
      if (r === 0) return `${p}?${q}`;
      if (r === 1) return `${p}?${q}&${q}`;
      if (r === 2) return `${p}?sign=${currentRng.pick(BAD_QUERY_VALUES)}`;
      if (r === 3)
        return `${p.replace(/\/[^/]+$/, '/' + currentRng.pick(['%00', '%zz', '..', '%2e%2e%2f', 'a'.repeat(3000)]))}?${q}`;
      if (r === 4)
        return `${p}?${q.replace(/:(\d+)$/, ':' + currentRng.pick(['0', '-1', '99999999999999999', 'x', '']))}`;
      return `${p}?${q}&download=${currentRng.pick(BAD_QUERY_VALUES)}`;
    },
  },
  {
    name: 'OPTIONS /file/content/*',
    face: 'cloudreve',
    method: 'OPTIONS',
    path: () => contentPath,
  },
  {
    name: 'GET /file/archive/...',
    face: 'cloudreve',
    method: 'GET',
    path: () => {
      const [p, q] = archivePath.split('?') as [string, string];
      const r = currentRng.int(4);
      if (r === 0) return `${p}?${q}`;
      if (r === 1)
        return `${p.replace(/archive\/[^/]+/, 'archive/' + currentRng.pick(['-'.repeat(36), '%00', 'x']))}?${q}`;
      if (r === 2) return `${p}?sign=${currentRng.pick(BAD_QUERY_VALUES)}`;
      return `${p}?${q}&sign=x`;
    },
  },
  {
    name: 'POST /workflow/download',
    face: 'cloudreve',
    method: 'POST',
    path: () => '/api/v4/workflow/download',
    body: () => ({
      dst: U('cloudreve://my/fz'),
      src: '["http://10.1.2.3/x","http://127.0.0.1/y","magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"]',
      src_file: U('cloudreve://my/f/a.txt'),
      preferred_node_id: U('x'),
      headers: '{"Cookie":"a","Host":"evil","X-Forwarded-For":"1"}',
      checksum: U('sha256:' + '0'.repeat(64)),
      connections: '8',
      filename: U('../../x'),
      select_files: '[0,1,-1]',
    }),
  },
  {
    name: 'GET /workflow',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/workflow',
    query: () => ({ page_size: '10', category: 'downloaded', next_page_token: 'eyJpZCI6Inh4In0=' }),
    // Spec 6.6: an invalid next_page_token is answered 50001 "Failed to query tasks".
    allowed: [50001],
  },
  {
    name: 'GET /workflow/progress/:id',
    face: 'cloudreve',
    method: 'GET',
    path: () => `/api/v4/workflow/progress/${currentRng.pick(['x', '%00', 'AAAA', 'a'.repeat(4000), '..'])}`,
  },
  {
    name: 'DELETE /workflow/download/:id',
    face: 'cloudreve',
    method: 'DELETE',
    path: () => `/api/v4/workflow/download/${currentRng.pick(['x', '%00', 'AAAA', 'a'.repeat(4000)])}`,
  },
  {
    name: 'PATCH /workflow/download/:id',
    face: 'cloudreve',
    method: 'PATCH',
    path: () => `/api/v4/workflow/download/${currentRng.pick(['x', '%00', 'AAAA'])}`,
    body: () => ({ files: '[{"index":0,"download":true}]' }),
  },
  {
    name: 'GET /workflow/:id',
    face: 'cloudreve',
    method: 'GET',
    path: () => `/api/v4/workflow/${currentRng.pick(['x', '%00', 'AAAA', '%zz'])}`,
  },
  {
    name: 'GET /workflow/events',
    face: 'cloudreve',
    method: 'GET',
    path: () => '/api/v4/workflow/events',
    noValidAuth: true,
  },
  {
    name: 'unknown /api/v4 route',
    face: 'cloudreve',
    method: 'GET',
    path: () => `/api/v4/${currentRng.pick(['nope', '%zz', '..%2f..%2f', 'file/%00', 'a'.repeat(5000)])}`,
  },
  {
    name: 'GET /files/{dir}?download=',
    face: 'path',
    method: 'GET',
    path: () =>
      `/files/${currentRng.pick(['fz', 'fz/%2e%2e', '%2e%2e/%2e%2e', 'a%00b', '%zz', '..\\..', 'f/a.txt'])}`,
    query: () => ({
      download: encodeURIComponent(
        currentRng.pick(['http://10.0.0.1/a', 'http://127.0.0.1/b', 'ftp://x/y', 'http://x.invalid/z']),
      ),
      filename: encodeURIComponent(currentRng.pick(['../../x', 'a/b', '\u202Efdp.exe'])),
      timeout: '10',
      header: 'Cookie:a',
      checksum: 'sha256:00',
      sha256: 'zz',
      connections: '999',
    }),
  },
  {
    name: 'GET /files/{dir}?downloads=',
    face: 'path',
    method: 'GET',
    path: () => `/files/${currentRng.pick(['', 'fz', '%2e%2e'])}`,
    query: () => ({ downloads: '' }),
  },
  {
    name: 'GET /files/?download_history=',
    face: 'path',
    method: 'GET',
    path: () => '/files/',
    query: () => ({ download_history: '' }),
  },
  {
    name: 'GET/HEAD /files/{path}',
    face: 'path',
    method: 'GET',
    path: () => `/files/${currentRng.pick(['f/a.txt', 'f', 'f/a.txt/..', 'nope', '%ff', 'f%2fa.txt'])}`,
    query: () => ({ hash: '', sha256: '', download: '', 'content-type': 'text/html', simple: '', json: '' }),
  },
  { name: 'GET /files/api/v1/downloads', face: 'path', method: 'GET', path: () => '/files/api/v1/downloads' },
  {
    name: 'DELETE /files/api/v1/downloads/:id',
    face: 'path',
    method: 'DELETE',
    path: () =>
      `/files/api/v1/downloads/${currentRng.pick(['x', '%00', '00000000-0000-0000-0000-000000000000', 'a'.repeat(4000), '%zz'])}`,
  },
];

let currentRng = new Rng(SEED);

function buildCase(rng: Rng, ep: Endpoint): RawRequest {
  currentRng = rng;
  const auth = ep.noValidAuth ? null : rng.bool(0.3) ? `Bearer ${apiToken}` : `Bearer ${access}`;
  const headers = fuzzHeaders(rng, auth);
  let target = ep.path();
  if (ep.query) target += fuzzQuery(rng, ep.query());
  else if (rng.bool(0.15)) target += fuzzQuery(rng, { x: '1' });
  let method = ep.method;
  if (ep.name.startsWith('GET/HEAD') && rng.bool(0.3)) method = 'HEAD';
  const req: RawRequest = { method, target, headers };
  if (ep.body) {
    const { body, contentType } = fuzzBody(rng, ep.body());
    if (contentType) headers.push(['Content-Type', contentType]);
    req.body = body;
  } else if (ep.raw) {
    req.body = Buffer.alloc(rng.pick([0, 10, 1000]), 0x61);
    headers.push(['Content-Type', rng.pick(['application/octet-stream', 'application/json', 'x/y'])]);
  } else if (rng.bool(0.1)) {
    req.body = Buffer.from(rng.pick(['{}', '{"a":', 'x'.repeat(2000)]));
    headers.push(['Content-Type', 'application/json']);
  }
  // Lying or malformed Content-Length and framing headers.
  if (req.body && rng.bool(0.08)) {
    req.noContentLength = true;
    const len = (req.body as Buffer).length;
    headers.push(
      ...rng.pick<Array<[string, string]>>([
        [['Content-Length', String(Math.max(0, len - 1))]],
        [['Content-Length', '-1']],
        [['Content-Length', 'abc']],
        [
          ['Content-Length', String(len)],
          ['Content-Length', String(len + 1)],
        ],
        [
          ['Content-Length', String(len)],
          ['Transfer-Encoding', 'chunked'],
        ],
        [['Transfer-Encoding', 'gzip, chunked']],
      ]),
    );
  }
  return req;
}

function check(ep: Endpoint, req: RawRequest, res: RawResponse): string | null {
  return ep.face === 'cloudreve'
    ? cloudreveViolation(res, ep.allowed, req.method)
    : pathViolation(res, req.method);
}

async function healthy(): Promise<void> {
  const res = await rawRequest(server.port, { method: 'GET', target: '/healthz' });
  assert.equal(res.status, 200, 'the server is still up');
}

async function runBatch(ep: Endpoint, rng: Rng, n: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const req = buildCase(rng, ep);
      let res: RawResponse;
      try {
        try {
          res = await rawRequest(server.port, req);
        } catch (e) {
          // A large body the server refused before reading it: its close resets the connection,
          // which can discard the answer on our side. Ask again, the body held back longer.
          if (!/EPIPE|ECONNRESET/.test((e as Error).message) || (req.body?.length ?? 0) < 64 * 1024) throw e;
          res = await rawRequest(server.port, { ...req, bodyDelayMs: 500 });
        }
      } catch (e) {
        // A request whose framing lies (Content-Length, Transfer-Encoding) may be dropped
        // without an answer; anything else must be answered.
        if (req.noContentLength) continue;
        failures.push(
          `${ep.name}: ${req.method} ${req.target.slice(0, 200)} headers=${JSON.stringify(req.headers?.map(([k, v]) => [k, v.slice(0, 40)]))} body=${req.body?.length} → ${(e as Error).message}`,
        );
        continue;
      }
      counts.set(ep.name, (counts.get(ep.name) ?? 0) + 1);
      const problem = check(ep, req, res);
      if (problem)
        failures.push(
          `${ep.name}: ${req.method} ${req.target.slice(0, 200)} headers=${JSON.stringify(req.headers?.map(([k, v]) => [k, v.slice(0, 40)]))} body=${req.body?.toString().slice(0, 120)} → ${problem}`,
        );
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

before(async () => {
  server = await startServer({
    args: [
      '--torrent-downloader',
      'none',
      '--download-allow-domain',
      'fuzz-only.invalid',
      '--task-retries',
      '0',
    ],
  });
  const signed = await server.signIn();
  access = signed.access;
  refresh = signed.refresh;
  const token = await server.api<{ token: string }>('POST', '/user/setting/tokens', {
    token: access,
    body: { name: 'fuzz' },
  });
  apiToken = token.body.data!.token;
  await uploadFile(server, access, 'cloudreve://my/f/a.txt', Buffer.from('hello fuzz\n'));
  await server.api('POST', '/file/create', {
    token: access,
    body: { uri: 'cloudreve://my/fz', type: 'folder' },
  });
  const url = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token: access,
    body: { uris: ['cloudreve://my/f/a.txt'] },
  });
  contentPath = url.body.data!.urls[0]!.url.replace(/^https?:\/\/[^/]+/, '');
  const zip = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token: access,
    body: { uris: ['cloudreve://my/f'], archive: true },
  });
  archivePath = zip.body.data!.urls[0]!.url.replace(/^https?:\/\/[^/]+/, '');
  const session = await server.api<{ session_id: string }>('PUT', '/file/upload', {
    token: access,
    body: { uri: 'cloudreve://my/fz/pending.bin', size: 100 },
  });
  uploadSession = session.body.data!.session_id;
});
after(async () => {
  await server?.stop();
});

describe('fuzzing every endpoint of both faces', { timeout: 240_000 }, () => {
  const PER_ENDPOINT = Number(process.env.FERRY_FUZZ_CASES ?? 130);
  for (const [i, ep] of ENDPOINTS.entries()) {
    test(ep.name, async () => {
      const rng = new Rng(SEED + i * 7919);
      // Body-taking routes get more cases: their input space is the largest.
      await runBatch(ep, rng, ep.body ? PER_ENDPOINT * 2 : PER_ENDPOINT);
      await healthy();
    });
  }

  test('no violations, and no internal error was logged', (t) => {
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    t.diagnostic(`seed ${SEED}: ${total} fuzz cases over ${counts.size} endpoints`);
    for (const [name, n] of counts) t.diagnostic(`  ${n}\t${name}`);
    const kinds = [...new Set(failures.map((f) => f.replace(/ headers=.*→/, ' →').slice(0, 300)))];
    assert.deepEqual(kinds.slice(0, 40), [], `${failures.length} violations`);
    assert.doesNotMatch(server.output(), /"request failed"|path api request failed|"server error"/);
    assert.ok(total >= 5000, `only ${total} cases ran`);
  });
});

// Regressions found by the fuzzer (each was an HTTP 500 or code 50005 on PostgreSQL, which
// refuses NUL in text), and requests the HTTP parser refuses, answered in the face's envelope.
describe('fuzzer findings, pinned', () => {
  test('NUL in ids, e-mails, names and paths is a client error on both faces', async () => {
    const cases: Array<[RawRequest, 'cloudreve' | 'path']> = [
      [{ method: 'DELETE', target: '/files/api/v1/downloads/%00' }, 'path'],
      [{ method: 'GET', target: '/files/a%00b' }, 'path'],
      [{ method: 'GET', target: '/files/x?download=http%3A%2F%2Fa%00b%2F' }, 'path'],
      [{ method: 'POST', target: '/api/v4/file/upload/%00/0', body: 'x' }, 'cloudreve'],
      [{ method: 'GET', target: '/api/v4/workflow/%00' }, 'cloudreve'],
      [{ method: 'GET', target: '/api/v4/file?uri=cloudreve%3A%2F%2Fmy%2F%00' }, 'cloudreve'],
    ];
    const json = (method: string, target: string, body: string): RawRequest => ({
      method,
      target,
      body,
      headers: [['Content-Type', 'application/json']],
    });
    cases.push(
      [json('POST', '/api/v4/session/token', '{"email":"a\\u0000@b.c","password":"xxxxxxxx"}'), 'cloudreve'],
      [json('POST', '/api/v4/user/setting/tokens', '{"name":"a\\u0000b"}'), 'cloudreve'],
      [json('DELETE', '/api/v4/file/upload', '{"id":"\\u0000","uri":"cloudreve://my/x"}'), 'cloudreve'],
      [
        json(
          'POST',
          '/api/v4/file/create',
          '{"uri":"cloudreve://my/x","type":"file","metadata":{"k\\u0000":"v"}}',
        ),
        'cloudreve',
      ],
    );
    for (const [req, face] of cases) {
      req.headers = [...(req.headers ?? []), ['Authorization', `Bearer ${access}`]];
      const res = await rawRequest(server.port, req);
      const body = JSON.parse(res.body.toString()) as { code?: number; success?: boolean; error?: string };
      if (face === 'cloudreve') assert.deepEqual([res.status, body.code], [200, 40001], req.target);
      else assert.deepEqual([res.status, body.success], [400, false], req.target);
    }
  });

  test('framing the HTTP parser refuses still gets the envelope of the face', async () => {
    for (const [prefix, face] of [
      ['/api/v4/file/create', 'cloudreve'],
      ['/files/x', 'path'],
    ] as const) {
      for (const headers of [
        [['Content-Length', '-1']],
        [
          ['Content-Length', '2'],
          ['Content-Length', '3'],
        ],
        [
          ['Content-Length', '2'],
          ['Transfer-Encoding', 'chunked'],
        ],
        [['X-Huge', 'h'.repeat(20_000)]],
      ] as Array<Array<[string, string]>>) {
        const res = await rawRequest(server.port, {
          method: 'POST',
          target: prefix,
          headers,
          body: '{}',
          noContentLength: true,
        });
        assert.ok(
          [400, 431].includes(res.status),
          `${prefix} ${JSON.stringify(headers).slice(0, 80)}: ${res.status}`,
        );
        const body = JSON.parse(res.body.toString()) as { code?: number; success?: boolean };
        if (face === 'cloudreve') assert.equal(body.code, 40001);
        else assert.equal(body.success, false);
      }
    }
  });
});
