import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startServer, waitFor } from '../helpers/server.ts';
import { startOrigin, expectedSha256 } from '../helpers/origin.ts';

test('download from the loopback origin lands in the drive and reads back byte-exact', async () => {
  const origin = await startOrigin();
  const server = await startServer({ args: ['--allow-network', '127.0.0.1/32'] });
  try {
    const { access } = await server.signIn();
    await server.api('POST', '/file/create', {
      token: access,
      body: { uri: 'cloudreve://my/Downloads', type: 'folder' },
    });
    const created = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token: access,
      body: { dst: 'cloudreve://my/Downloads', src: [origin.route('/big.bin', { size: 4194304 })] },
    });
    assert.equal(created.body.code, 0, JSON.stringify(created.body));
    const id = created.body.data![0]!.id;
    const done = await waitFor(async () => {
      const r = await server.api<{ status: string; error?: string }>('GET', `/workflow/${id}`, {
        token: access,
      });
      return r.body.data && ['completed', 'error'].includes(r.body.data.status) ? r.body.data : undefined;
    });
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const list = await server.api<{ files: Array<{ name: string; size: number }> }>(
      'GET',
      '/file?uri=' + encodeURIComponent('cloudreve://my/Downloads'),
      { token: access },
    );
    console.log(JSON.stringify(list.body.data?.files));
    const urls = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: access,
      body: { uris: [`cloudreve://my/Downloads/${list.body.data!.files[0]!.name}`] },
    });
    const bytes = Buffer.from(await (await fetch(urls.body.data!.urls[0]!.url)).arrayBuffer());
    assert.equal(createHash('sha256').update(bytes).digest('hex'), expectedSha256(4194304, 1));
  } finally {
    await server.stop();
    await origin.close();
  }
});
