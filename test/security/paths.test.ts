// Hostile names and paths everywhere a name or path enters Ferry: path-face URLs, ?filename,
// Content-Disposition from a hostile origin, dst URIs, cloudreve:// URIs naming other users,
// upload names, rename targets, zip entry names (unpacked with the real `unzip`), and torrent
// paths from a hostile swarm. Containment: nothing is written outside the data dir, every name
// that lands is one safe segment in the folder it was meant for, and nothing of another user is
// readable. All traffic stays on 127.0.0.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';
import { startSwarm } from '../helpers/swarm.ts';
import { assertDataDirShape, escapeCandidates, rawRequest, walk } from './helpers.ts';

const execFileAsync = promisify(execFile);
const MARK = 'ferry-sec-escape';

let origin: Origin;
let server: TestServer;
let alice: { access: string; userId: string };
let bob: { access: string; userId: string };
let tmp: string;

interface FileDto {
  name: string;
  type: number;
  path: string;
}
interface Task {
  id: string;
  status: string;
  error?: string;
}

/** A name that may land in a drive: one segment, no separators, controls or bidi overrides. */
function assertSafeName(name: string, what: string) {
  assert.ok(name.length > 0 && name !== '.' && name !== '..', `${what}: ${JSON.stringify(name)}`);
  assert.ok(!/[/\\\u0000-\u001f\u007f]/.test(name), `${what}: ${JSON.stringify(name)}`);
  assert.ok(Buffer.byteLength(name) <= 255, `${what}: ${Buffer.byteLength(name)} bytes`);
}

async function list(token: string, uri: string): Promise<FileDto[]> {
  const r = await server.api<{ files: FileDto[] }>('GET', `/file?uri=${encodeURIComponent(uri)}`, { token });
  return r.body.code === 0 ? r.body.data!.files : [];
}

async function finished(token: string, id: string): Promise<Task> {
  return waitFor(
    async () => {
      const t = (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;
      return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
    },
    60_000,
    `task ${id}`,
  );
}

before(async () => {
  origin = await startOrigin();
  tmp = await mkdtemp(join(tmpdir(), 'ferry-sec-paths-'));
  server = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      '--task-retries',
      '0',
      '--no-bt-dht',
      '--no-bt-pex',
      '--no-bt-lsd',
      '--torrent-downloader',
      'builtin',
    ],
  });
  await server.addUser('alice@example.com', 'alice-password-1');
  await server.addUser('bob@example.com', 'bob-password-1');
  alice = await server.signIn('alice@example.com', 'alice-password-1');
  bob = await server.signIn('bob@example.com', 'bob-password-1');
  await uploadFile(server, alice.access, 'cloudreve://my/secret.txt', Buffer.from('alice secret\n'));
  origin.route('/f.bin', { size: 1000 });
});
after(async () => {
  // Containment, whatever the tests did: the data dir holds only Ferry's own things, and no
  // escaped write landed beside or above it.
  try {
    if (server) {
      await assertDataDirShape(server.dataDir);
      for (const name of [MARK, 'escape-up.txt', 'absolute.txt', 'passwd', 'pwned.txt'])
        for (const p of escapeCandidates(server.dataDir, name))
          if (p !== '/etc/passwd') assert.ok(!existsSync(p), `${p} exists`);
    }
  } finally {
    await server?.stop();
    await origin?.close();
    await rm(tmp, { recursive: true, force: true });
  }
});

describe('path face', () => {
  test('traversal in the URL never leaves the caller’s own tree', async () => {
    const targets = [
      '/files/../../../../etc/passwd',
      '/files/..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/files/%2E%2E%5C%2E%2E%5Cetc%5Cpasswd',
      '/files/..\\..\\etc\\passwd',
      '/files//etc/passwd',
      '/files/%2Fetc%2Fpasswd',
      '/files/.%2e/secret.txt',
      '/files/%c0%ae%c0%ae/secret.txt',
      '/files/%uff0e%uff0e/secret.txt',
      '/files/\uff0e\uff0e\uff0fsecret.txt',
      `/files/${alice.userId}/secret.txt`,
      `/files/../${alice.userId}/secret.txt`,
    ];
    for (const target of targets) {
      for (const [who, token] of [
        ['alice', alice.access],
        ['bob', bob.access],
      ] as const) {
        const res = await rawRequest(server.port, {
          method: 'GET',
          target: encodeURI(target).replaceAll('%25', '%'),
          headers: [['Authorization', `Bearer ${token}`]],
        });
        assert.ok(!res.body.includes('root:'), `${target} served /etc/passwd`);
        // Only Alice, and only at a path that cleans to her own secret.txt, reads it.
        if (res.body.toString() === 'alice secret\n') {
          assert.equal(who, 'alice', `${who} read Alice's file via ${target}`);
        } else assert.ok(res.status === 404 || res.status === 400, `${who} ${target}: ${res.status}`);
      }
    }
  });

  test('hostile directories and ?filename values land as safe names inside the tree', async () => {
    const dirs = ['..%2F..%2Fpd', '%2e%2e/%2e%2e/pd', 'pd/%2e%2e/pd', 'pd\\..\\..\\x', '%E2%80%AEpd'];
    const names = [
      `../../${MARK}`,
      `/etc/${MARK}`,
      `..\\..\\${MARK}`,
      `a/b/${MARK}`,
      `\u202Egnp.${MARK}.exe`,
      `\uff0e\uff0e\uff0f${MARK}`,
      `e\u0301\u0301\u0301${MARK}`,
      `${MARK}\u0001\u001f\u007f\u0085`,
      `${'x'.repeat(1000)}.bin`,
      'CON',
      '..',
      '.',
      ' ',
    ];
    const ids: string[] = [];
    for (const [i, name] of names.entries()) {
      const dir = dirs[i % dirs.length]!;
      const res = await rawRequest(server.port, {
        method: 'GET',
        target: `/files/${dir}?download=${encodeURIComponent(origin.url('/f.bin'))}&filename=${encodeURIComponent(name)}`,
        headers: [['Authorization', `Bearer ${bob.access}`]],
      });
      const body = JSON.parse(res.body.toString()) as {
        success: boolean;
        download_id?: string;
        path?: string;
      };
      if (res.status !== 200) {
        assert.ok(res.status >= 400 && res.status < 500, `${dir} ${JSON.stringify(name)}: ${res.status}`);
        continue;
      }
      assert.ok(!body.path!.split('/').includes('..'), body.path);
      ids.push(body.download_id!);
    }
    assert.ok(ids.length >= names.length - 2, `only ${ids.length} downloads started`);
    // Every download completed into a folder of Bob's tree, under a safe name.
    await waitFor(async () => {
      const h = (await (
        await fetch(`${server.url}/files/?download_history=`, {
          headers: { authorization: `Bearer ${bob.access}` },
        })
      ).json()) as { history: Array<{ id: string; status: string; file_path: string }> };
      return ids.every((id) => h.history.some((e) => e.id === id)) ? true : undefined;
    }, 60_000);
    const all = await walkTree(bob.access, 'cloudreve://my');
    for (const f of all) assertSafeName(f.name, f.path);
    assert.equal(all.filter((f) => f.type === 0).length, ids.length, JSON.stringify(all.map((f) => f.path)));
    assert.ok(
      !all.some((f) => f.type === 0 && /[\u202a-\u202e\u2066-\u2069]/.test(f.name)),
      // (folder names come from the URL: names the user chose, like Cloudreve allows)
      'bidi overrides from ?filename are removed',
    );
  });
});

/** Every entry of a user's tree, breadth first. */
async function walkTree(token: string, uri: string): Promise<FileDto[]> {
  const out: FileDto[] = [];
  const queue = [uri];
  while (queue.length) {
    const next = queue.shift()!;
    for (const f of await list(token, next)) {
      out.push(f);
      if (f.type === 1) queue.push(f.path);
    }
  }
  return out;
}

describe('Cloudreve face', () => {
  test('Content-Disposition from a hostile origin gives safe names in the destination folder', async () => {
    await server.api('POST', '/file/create', {
      token: alice.access,
      body: { uri: 'cloudreve://my/cd', type: 'folder' },
    });
    const values = [
      `attachment; filename="../../${MARK}-1"`,
      `attachment; filename="/etc/${MARK}-2"`,
      `attachment; filename*=UTF-8''..%2F..%2F${MARK}-3`,
      `attachment; filename*=UTF-8''%00%2Fetc%2F${MARK}-4`,
      `attachment; filename="..\\\\..\\\\${MARK}-5"`,
      `attachment; filename*=UTF-8''%E2%80%AEtxt.${MARK}-6.exe`,
      `attachment; filename*=UTF-8''%EF%BC%8E%EF%BC%8E%EF%BC%8F${MARK}-7`,
      `attachment; filename=".."`,
      `attachment; filename="${'y'.repeat(600)}"`,
      `attachment; filename*=UTF-8''%C0%AE%C0%AE%2F${MARK}-8`,
    ];
    const srcs = values.map((v, i) => origin.route(`/cd/${i}`, { size: 100 + i, contentDisposition: v }));
    const r = await server.api<Task[]>('POST', '/workflow/download', {
      token: alice.access,
      body: { dst: 'cloudreve://my/cd', src: srcs },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    for (const t of r.body.data!) assert.equal((await finished(alice.access, t.id)).status, 'completed');
    const landed = await list(alice.access, 'cloudreve://my/cd');
    assert.equal(landed.length, values.length);
    for (const f of landed) {
      assertSafeName(f.name, 'content-disposition');
      assert.ok(
        !/[\u202a-\u202e\u2066-\u2069]/.test(f.name),
        `bidi override kept: ${JSON.stringify(f.name)}`,
      );
    }
    const root = (await list(alice.access, 'cloudreve://my')).map((f) => f.name).sort();
    assert.deepEqual(root, ['cd', 'secret.txt']);
  });

  test('dst URIs: traversal is cleaned, other users’ drives and other filesystems are refused', async () => {
    const src = [origin.url('/f.bin')];
    const cases: Array<[string, (code: number) => boolean]> = [
      [`cloudreve://${alice.userId}@my/`, (c) => c === 403],
      [`cloudreve://${alice.userId}@my/cd`, (c) => c === 403],
      [`cloudreve://${alice.userId.toUpperCase()}@my/`, (c) => c !== 0],
      [`cloudreve://${alice.userId}:pw@my/`, (c) => c !== 0],
      ['cloudreve://share/x', (c) => c !== 0],
      ['cloudreve://trash', (c) => c !== 0],
      ['cloudreve://my/a%00b', (c) => c === 40001],
      ['cloudreve://my/\u0000', (c) => c === 40001],
      ['file:///etc', (c) => c === 40001],
      ['cloudreve://my/../../../../nowhere', (c) => c === 40016],
      ['cloudreve://my/%2e%2e/%2e%2e/nowhere', (c) => c === 40016],
    ];
    for (const [dst, ok] of cases) {
      const r = await server.api('POST', '/workflow/download', { token: bob.access, body: { dst, src } });
      assert.ok(ok(r.body.code), `${dst}: ${JSON.stringify(r.body)}`);
    }
    // `..` above the root cleans to the root itself: the task lands in Bob's own drive.
    const up = await server.api<Task[]>('POST', '/workflow/download', {
      token: bob.access,
      body: { dst: 'cloudreve://my/../..', src, filename: `up-${MARK}` },
    });
    assert.equal(up.body.code, 0);
    await finished(bob.access, up.body.data![0]!.id);
    assert.ok((await list(bob.access, 'cloudreve://my')).some((f) => f.name === `up-${MARK}`));
    // Nothing reached Alice.
    assert.deepEqual((await list(alice.access, 'cloudreve://my')).map((f) => f.name).sort(), [
      'cd',
      'secret.txt',
    ]);
  });

  test('upload names and rename targets: refused, or one safe segment in the right folder', async () => {
    await server.api('POST', '/file/create', {
      token: bob.access,
      body: { uri: 'cloudreve://my/up', type: 'folder' },
    });
    const rootBefore = (await list(bob.access, 'cloudreve://my')).map((f) => f.name).sort();
    const hostile = [
      '..',
      '.',
      '%2e%2e',
      '..%2f..%2fx',
      '..%5C..%5Cx',
      'a%5Cb',
      'a%00b',
      'a%0Ab',
      'a%7Fb',
      '%E2%80%AEgnp.exe',
      '%EF%BC%8F',
      'e%CC%81%CC%81',
      'x'.repeat(256),
      encodeURIComponent('é'.repeat(128)),
      '%20',
    ];
    let n = 0;
    for (const seg of hostile) {
      const session = await server.api('PUT', '/file/upload', {
        token: bob.access,
        body: { uri: `cloudreve://my/up/${seg}`, size: 0 },
      });
      if (session.body.code === 0) n++;
      else
        assert.ok(
          [40001, 40004, 40052, 40053].includes(session.body.code),
          `${seg}: ${JSON.stringify(session.body)}`,
        );
    }
    await uploadFile(server, bob.access, 'cloudreve://my/up/plain.txt', Buffer.from('x'));
    const renames = [
      '..',
      '.',
      '../x',
      'a/b',
      'a\\b',
      'a\u0000b',
      'a\nb',
      ' ',
      '\u202Etxt.exe',
      'x'.repeat(256),
      '／',
    ];
    for (const name of renames) {
      const r = await server.api<FileDto>('POST', '/file/rename', {
        token: bob.access,
        body: { uri: 'cloudreve://my/up/plain.txt', new_name: name },
      });
      if (r.body.code === 0) {
        assertSafeName(r.body.data!.name, 'rename');
        await server.api('POST', '/file/rename', {
          token: bob.access,
          body: { uri: r.body.data!.path, new_name: 'plain.txt' },
        });
      } else
        assert.ok([40001, 40052].includes(r.body.code), `${JSON.stringify(name)}: ${JSON.stringify(r.body)}`);
    }
    // Whatever was accepted is in /up as a single segment; the root gained nothing.
    for (const f of await walkTree(bob.access, 'cloudreve://my/up')) assertSafeName(f.name, f.path);
    assert.deepEqual((await list(bob.access, 'cloudreve://my')).map((f) => f.name).sort(), rootBefore);
    assert.ok(n >= 1);
  });
});

describe('zip entry names', () => {
  test('an archive of hostile but legal names unpacks with unzip entirely inside its folder', async () => {
    const names = [
      '...',
      '..a',
      'a..',
      ' ..',
      '.. ',
      'C:',
      'C:x',
      '~',
      '$HOME',
      '-rf',
      '\u202Etxt.exe',
      '\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fx',
      'e\u0301\u0301\u0301',
      'x'.repeat(255),
      '\\\\',
    ];
    let uploaded = 0;
    for (const name of names) {
      try {
        await uploadFile(
          server,
          alice.access,
          `cloudreve://my/zip/d1/${encodeURIComponent(name)}`,
          Buffer.from(name),
        );
        uploaded++;
      } catch {
        // refused names (the backslashes) simply are not in the archive
      }
    }
    await uploadFile(
      server,
      alice.access,
      `cloudreve://my/zip/${encodeURIComponent('..a')}/${encodeURIComponent('...')}/deep.txt`,
      Buffer.from('deep'),
    );
    const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: alice.access,
      body: { uris: ['cloudreve://my/zip'], archive: true },
    });
    const zip = Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer());
    const zipPath = join(tmp, 'hostile.zip');
    await writeFile(zipPath, zip);
    const env = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };
    const listed = (await execFileAsync('/usr/bin/unzip', ['-Z1', zipPath], { env })).stdout
      .split('\n')
      .filter(Boolean);
    for (const entry of listed) {
      assert.ok(!entry.startsWith('/') && !/^[A-Za-z]:/.test(entry), `absolute entry ${entry}`);
      assert.ok(!entry.split(/[/\\]/).includes('..'), `.. in entry ${entry}`);
    }
    const out = join(tmp, 'out');
    await execFileAsync('/usr/bin/unzip', ['-o', '-q', zipPath, '-d', out], { env });
    const root = await realpath(out);
    const files = await walk(out);
    for (const f of files) {
      assert.notEqual(f.kind, 'link', `symlink ${f.path}`);
      assert.ok((await realpath(join(out, f.path))).startsWith(root + '/'), `${f.path} escaped`);
    }
    assert.equal(
      files.filter((f) => f.kind === 'file').length,
      uploaded + 1,
      files.map((f) => f.path).join('\n'),
    );
    assert.ok(
      !existsSync(join(tmp, 'x')) && !existsSync(join(tmp, '...')),
      'nothing beside the output folder',
    );
  });
});

describe('torrent paths', () => {
  test('a hostile torrent lands inside its folder, and its zip unpacks inside too', async () => {
    const hostile = await startSwarm({ name: 'Hostile', files: [], hostileTorrent: true });
    try {
      await server.api('POST', '/file/create', {
        token: bob.access,
        body: { uri: 'cloudreve://my/t', type: 'folder' },
      });
      const r = await server.api<Task[]>('POST', '/workflow/download', {
        token: bob.access,
        body: { dst: 'cloudreve://my/t', src: [hostile.magnet] },
      });
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      const done = await finished(bob.access, r.body.data![0]!.id);
      assert.equal(done.status, 'completed', done.error);
      const all = await walkTree(bob.access, 'cloudreve://my/t');
      for (const f of all) {
        assertSafeName(f.name, f.path);
        assert.ok(f.path.startsWith('cloudreve://my/t/'), f.path);
      }
      const root = (await list(bob.access, 'cloudreve://my')).map((f) => f.name);
      for (const escaped of ['etc', 'escape-up.txt', 'Windows', 'C:\\Windows'])
        assert.ok(!root.includes(escaped), `${escaped} escaped to the root`);
      // Served back as a zip and unpacked: still contained.
      const z = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
        token: bob.access,
        body: { uris: ['cloudreve://my/t'], archive: true },
      });
      const zipPath = join(tmp, 'torrent.zip');
      await writeFile(zipPath, Buffer.from(await (await fetch(z.body.data!.urls[0]!.url)).arrayBuffer()));
      const out = join(tmp, 'tout');
      await execFileAsync('/usr/bin/unzip', ['-o', '-q', zipPath, '-d', out], {
        env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' },
      });
      const base = await realpath(out);
      for (const f of await walk(out)) {
        assert.notEqual(f.kind, 'link');
        assert.ok((await realpath(join(out, f.path))).startsWith(base + '/'), `${f.path} escaped`);
      }
      assert.ok(!existsSync(join(tmp, 'escape-up.txt')));
      await assertDataDirShape(server.dataDir);
    } finally {
      await hostile.close();
    }
  });
});

describe('stored content served inline', () => {
  test('HTML or SVG from a user’s drive never runs script in Ferry’s origin', async () => {
    await uploadFile(
      server,
      bob.access,
      'cloudreve://my/page.html',
      Buffer.from('<script>alert(1)</script>'),
    );
    await uploadFile(server, bob.access, 'cloudreve://my/img.svg', Buffer.from('<svg onload="alert(1)"/>'));
    for (const target of ['/files/page.html', '/files/img.svg', '/files/page.html?content-type=text/html']) {
      const res = await fetch(`${server.url}${target}`, {
        headers: { authorization: `Bearer ${bob.access}` },
      });
      assert.equal(res.status, 200, target);
      assert.equal(res.headers.get('content-security-policy'), 'sandbox', target);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', target);
    }
  });
});
