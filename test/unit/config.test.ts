import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, defaults, loadConfig } from '../../src/config/config.ts';

function withFile(content: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-config-'));
  const path = join(dir, 'ferry.json');
  writeFileSync(path, content);
  try {
    fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

test('defaults with no flags, no env', () => {
  const { config, positionals } = loadConfig([], {});
  const d = defaults();
  assert.equal(config.port, d.port);
  assert.equal(config.allowDownload, true);
  assert.equal(config.linkTtl, 3600);
  assert.equal(config.dataDir, resolve('./data'));
  assert.equal(config.databaseUrl, join(resolve('./data'), 'ferry.db'));
  assert.deepEqual(positionals, []);
});

test('flags beat env which beats the config file', () => {
  withFile(
    JSON.stringify({ port: 1111, linkTtl: 10, siteUrl: 'http://file.test/', logLevel: 'debug' }),
    (path) => {
      const fileOnly = loadConfig(['--config', path], {}).config;
      assert.equal(fileOnly.port, 1111);
      assert.equal(fileOnly.linkTtl, 10);
      assert.equal(fileOnly.siteUrl, 'http://file.test', 'trailing slash trimmed');

      const env = { FERRY_CONFIG: path, FERRY_PORT: '2222', FERRY_LINK_TTL: '20' };
      const fromEnv = loadConfig([], env).config;
      assert.equal(fromEnv.port, 2222);
      assert.equal(fromEnv.linkTtl, 20);
      assert.equal(fromEnv.logLevel, 'debug', 'file value kept where nothing overrides it');

      const fromFlags = loadConfig(['--port', '3333'], env).config;
      assert.equal(fromFlags.port, 3333);
      assert.equal(fromFlags.linkTtl, 20);
    },
  );
});

test('empty env values are ignored', () => {
  assert.equal(loadConfig([], { FERRY_PORT: '' }).config.port, 5212);
});

test('--no-allow-download, env booleans', () => {
  assert.equal(loadConfig(['--no-allow-download'], {}).config.allowDownload, false);
  assert.equal(
    loadConfig(['--allow-download'], { FERRY_ALLOW_DOWNLOAD: 'false' }).config.allowDownload,
    true,
  );
  assert.equal(loadConfig([], { FERRY_ALLOW_DOWNLOAD: 'off' }).config.allowDownload, false);
  assert.equal(loadConfig([], { FERRY_ALLOW_DOWNLOAD: 'yes' }).config.allowDownload, true);
  assert.match(problems([], { FERRY_ALLOW_DOWNLOAD: 'maybe' }), /allow-download/);
});

test('repeatable flags collect every value; env lists are comma separated', () => {
  const { config } = loadConfig(
    ['--allow-network', '127.0.0.1/32', '--allow-network', '10.0.0.0/8', '--download-block-domain', 'x.test'],
    {},
  );
  assert.deepEqual(config.allowNetworks, ['127.0.0.1/32', '10.0.0.0/8']);
  assert.deepEqual(config.downloadBlockDomains, ['x.test']);
  const env = loadConfig([], { FERRY_DOWNLOAD_ALLOW_DOMAIN: 'a.test, *.b.test,,' }).config;
  assert.deepEqual(env.downloadAllowDomains, ['a.test', '*.b.test']);
});

test('every invalid value is reported at once', () => {
  const message = problems(['--port', 'abc', '--link-ttl=-5', '--download-connections', '0'], {
    FERRY_MAX_CONCURRENT_TASKS: 'many',
  });
  assert.match(message, /--port/);
  assert.match(message, /--link-ttl/);
  assert.match(message, /--download-connections/);
  assert.match(message, /--max-concurrent-tasks/);
  assert.match(problems(['--port', '70000']), /--port/);
  assert.match(problems(['--path-api-base', '/api/x']), /--path-api-base/);
  assert.match(problems(['--path-api-base', '/']), /--path-api-base/);
});

test('numbers must be plain decimal integers', () => {
  for (const bad of ['', ' ', '1.5', '1e3', '0x10', '12abc', 'Infinity']) {
    assert.match(problems([`--link-ttl=${bad}`]), /--link-ttl/, JSON.stringify(bad));
  }
  assert.equal(loadConfig(['--link-ttl', ' 42 '], {}).config.linkTtl, 42);
});

test('the site URL must be an http(s) URL', () => {
  for (const bad of ['files.example.com', 'ftp://x.test', 'https://x.test?a=1', 'http://']) {
    assert.match(problems(['--site-url', bad]), /--site-url/, bad);
  }
  assert.equal(
    loadConfig(['--site-url', 'https://x.test/ferry/'], {}).config.siteUrl,
    'https://x.test/ferry',
  );
});

test('unknown flags and a broken config file are errors', () => {
  assert.match(problems(['--prot', '1']), /prot/);
  withFile('{ not json', (path) => assert.match(problems(['--config', path]), /--config/));
  assert.match(problems(['--config', '/nonexistent/ferry.json']), /--config/);
});

test('unknown keys in the config file are reported', () => {
  withFile(JSON.stringify({ prot: 1 }), (path) => assert.match(problems(['--config', path]), /prot/));
});

test('positionals and extra options pass through', () => {
  const { positionals, extra } = loadConfig(
    ['a@b.test', '--password', 'pw12'],
    {},
    { password: { type: 'string' } },
  );
  assert.deepEqual(positionals, ['a@b.test']);
  assert.equal(extra.password, 'pw12');
});
