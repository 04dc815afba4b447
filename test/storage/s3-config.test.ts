// The storage flags: defaults, flags and FERRY_S3_* variables, validation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

test('local storage by default; S3 settings default to us-east-1 and path style', () => {
  const { config } = loadConfig([], {});
  assert.equal(config.storage, 'local');
  assert.equal(config.s3Region, 'us-east-1');
  assert.equal(config.s3ForcePathStyle, true);
  assert.equal(config.s3Prefix, '');
});

test('flags and FERRY_S3_* variables', () => {
  const { config } = loadConfig(
    ['--storage', 's3', '--s3-bucket', 'files', '--no-s3-force-path-style', '--s3-prefix', 'ferry/'],
    {
      FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000',
      FERRY_S3_REGION: 'eu-west-3',
      FERRY_S3_ACCESS_KEY: 'AK',
      FERRY_S3_SECRET_KEY: 'SK',
      FERRY_S3_BUCKET: 'overridden-by-the-flag',
    },
  );
  assert.equal(config.storage, 's3');
  assert.equal(config.s3Bucket, 'files');
  assert.equal(config.s3Endpoint, 'http://127.0.0.1:9000');
  assert.equal(config.s3Region, 'eu-west-3');
  assert.equal(config.s3AccessKey, 'AK');
  assert.equal(config.s3SecretKey, 'SK');
  assert.equal(config.s3ForcePathStyle, false);
  assert.equal(config.s3Prefix, 'ferry/');
  assert.equal(loadConfig([], { FERRY_S3_FORCE_PATH_STYLE: 'false' }).config.s3ForcePathStyle, false);
});

test('invalid storage settings are all reported', () => {
  assert.throws(
    () => loadConfig(['--storage', 'ftp'], {}),
    (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /--storage: local or s3/);
      return true;
    },
  );
  assert.throws(() => loadConfig(['--storage', 's3'], {}), /--storage s3 needs --s3-bucket/);
  assert.throws(
    () => loadConfig(['--storage', 's3', '--s3-bucket', 'b', '--s3-endpoint', 'minio:9000'], {}),
    /--s3-endpoint: expected http\(s\):\/\/host\[:port\]/,
  );
  assert.throws(
    () => loadConfig(['--storage', 's3', '--s3-bucket', 'b', '--s3-access-key', 'AK'], {}),
    /--s3-access-key and --s3-secret-key go together/,
  );
});
