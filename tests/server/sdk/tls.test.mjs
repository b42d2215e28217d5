// TLS: with --tls-cert/--tls-key the server speaks HTTPS (checked with a self-signed certificate
// the client trusts explicitly), and a key that does not match the certificate stops it at once.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from './harness.mjs';

function selfSigned(dir, name) {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
    '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key, cert };
}

function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
}

test('HTTPS with a certificate, and a refused key mismatch', async (t) => {
  const openssl = spawnSync('openssl', ['version']);
  if (openssl.status !== 0) {
    t.skip('no openssl command to make a certificate');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'magnetar-tls-'));
  const a = selfSigned(dir, 'a');
  const b = selfSigned(dir, 'b');
  const server = await startServer(['--tls-cert', a.cert, '--tls-key', a.key]);
  try {
    assert.match(server.log(), /listening on https:\/\//);
    const r = await httpsGet(`https://127.0.0.1:${server.port}/health`, readFileSync(a.cert));
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).status, 'ok');
    await assert.rejects(httpsGet(`https://127.0.0.1:${server.port}/health`, readFileSync(b.cert)),
                         'a certificate the client does not trust is refused');
  } finally {
    await server.stop();
  }
  await assert.rejects(startServer(['--tls-cert', a.cert, '--tls-key', b.key]),
                       /exited with 2 before listening[\s\S]*TLS/);
});
