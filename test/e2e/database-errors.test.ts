// A database that fails writes (as on a full disk) is answered as the server's error — 50001 on
// the Cloudreve face, 503 DB_ERROR on the path face — never as the user's conflict (40004
// "Object existed"), which only a real unique-name clash may produce. The failure is a trigger
// on the files table raising what each database raises when its disk is full.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { dialect, startServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let access: string;

before(async () => {
  // Loopback sources are allowed so the path face gets as far as the destination folder; the
  // download itself is never created (port 9 is not contacted).
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32'] });
  ({ access } = await server.signIn());
  for (const name of ['existing', 'to-rename', 'into']) {
    const r = await server.api('POST', '/file/create', {
      token: access,
      body: { uri: `cloudreve://my/${name}`, type: 'folder' },
    });
    assert.equal(r.body.code, 0);
  }
});
after(async () => {
  await server?.stop();
});

async function failFileWrites(): Promise<void> {
  if (dialect === 'postgres') {
    await server.sql(
      `CREATE FUNCTION ferry_disk_full() RETURNS trigger AS $$ BEGIN
         RAISE EXCEPTION 'could not extend file "base/16384/16400": No space left on device'
         USING ERRCODE = '53100'; END $$ LANGUAGE plpgsql`,
    );
    await server.sql(
      'CREATE TRIGGER files_disk_full BEFORE INSERT OR UPDATE ON files FOR EACH ROW EXECUTE FUNCTION ferry_disk_full()',
    );
  } else {
    for (const event of ['INSERT', 'UPDATE'])
      await server.sql(
        `CREATE TRIGGER files_disk_full_${event.toLowerCase()} BEFORE ${event} ON files BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`,
      );
  }
}

test('a real name clash is 40004; a failing database is 50001 / 503, never 40004', async () => {
  // Before the failure: the clash rules hold.
  const clash = await server.api('POST', '/file/create', {
    token: access,
    body: { uri: 'cloudreve://my/existing', type: 'folder', err_on_conflict: true },
  });
  assert.equal(clash.body.code, 40004);

  await failFileWrites();
  const created = await server.api('POST', '/file/create', {
    token: access,
    body: { uri: 'cloudreve://my/a-new-unique-name', type: 'folder' },
  });
  assert.equal(created.body.code, 50001, `create: ${JSON.stringify(created.body)}`);
  assert.match(created.body.correlation_id ?? '', /^[0-9a-f-]{36}$/);
  const renamed = await server.api('POST', '/file/rename', {
    token: access,
    body: { uri: 'cloudreve://my/to-rename', new_name: 'another-unique-name' },
  });
  assert.equal(renamed.body.code, 50001, `rename: ${JSON.stringify(renamed.body)}`);
  const moved = await server.api('POST', '/file/move', {
    token: access,
    body: { uris: ['cloudreve://my/to-rename'], dst: 'cloudreve://my/into' },
  });
  assert.notEqual(moved.body.code, 0);
  assert.ok(
    !JSON.stringify(moved.body).includes('40004'),
    `move answered a user conflict: ${JSON.stringify(moved.body)}`,
  );
  // The path face creates the destination folder of a download: its failure is a 503 too.
  const res = await fetch(
    `${server.url}/files/brand-new-folder/?download=${encodeURIComponent('http://127.0.0.1:9/x.bin')}`,
    { headers: { authorization: `Bearer ${access}` } },
  );
  const body = (await res.json()) as { error?: string };
  assert.equal(res.status, 503, JSON.stringify(body));
  assert.equal(body.error, 'DB_ERROR');
  // Reads still work, and nothing was created.
  const list = await server.api<{ files: Array<{ name: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent('cloudreve://my')}`,
    { token: access },
  );
  assert.equal(list.body.code, 0);
  assert.deepEqual(list.body.data!.files.map((f) => f.name).sort(), ['existing', 'into', 'to-rename']);
});
