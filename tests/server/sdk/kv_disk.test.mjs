// The disk KV cache (--kv-disk-dir) across server restarts, driven with the OpenAI SDK:
//
//   1. a server answers a long prompt (~1,500 tokens) and stops: a cold checkpoint of the system
//      prompt and, at the clean shutdown, one of the whole conversation are written;
//   2. a new server process on the same directory gets the conversation plus a new user turn: the
//      prefix is loaded from disk (cached_tokens, the prefill counter and the log say so) and the
//      greedy answer equals that of a server without a cache;
//   3. that checkpoint file is damaged on disk: the next server reports and deletes it, falls back
//      to the system prompt's checkpoint and still gives the same answer;
//   4. a file size limit (RLIMIT_FSIZE, EFBIG) makes every save fail: requests succeed, the failure
//      is logged and counted;
//   5. unusable directories and options stop the server at startup with exit 2 and a clear error.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import OpenAI from 'openai';
import { forcedCompletions, metric, startServer } from './harness.mjs';

const ANSWER = 'Noted, I will follow these rules.';
const FORCED = forcedCompletions({ 'FORCE-FIRST': ANSWER });
const root = mkdtempSync(join(tmpdir(), 'magnetar-kv-disk-'));
const dir = join(root, 'cache');

after(() => rmSync(root, { recursive: true, force: true }));

let system = '';
for (let i = 1; i <= 72; ++i) {
  system += `Rule ${i}: answer in plain words, cite the section you rely on, and keep it short. `;
}
const FIRST = [
  { role: 'system', content: system },
  { role: 'user', content: 'FORCE-FIRST Please confirm the rules.' },
];
const SECOND = [
  ...FIRST,
  { role: 'assistant', content: ANSWER },
  { role: 'user', content: 'Which rule covers citations?' },
];

function client(server) {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}

async function chat(server, messages) {
  const r = await client(server).chat.completions.create({
    model: 'deepseek-v4-flash',
    messages,
    max_tokens: 12,
    temperature: 0,
    thinking: { type: 'disabled' },
  });
  return {
    text: r.choices[0].message.content,
    prompt: r.usage.prompt_tokens,
    cached: r.usage.prompt_tokens_details.cached_tokens,
  };
}

async function withServer(args, body, launcher = []) {
  const server = await startServer(
    ['--test-forced-completion', FORCED, '--parallel', '1', ...args],
    {},
    launcher,
  );
  try {
    return await body(server);
  } finally {
    assert.equal(await server.stop(), 0, `clean shutdown:\n${server.log()}`);
  }
}

function flipByte(path, offset) {
  const bytes = readFileSync(path);
  bytes[offset] ^= 0x40;
  writeFileSync(path, bytes);
}

test('a conversation survives restarts through the disk cache, and a damaged file is dropped', async () => {
  // The reference: a server without a cache prefills the second request from nothing.
  const reference = await withServer([], (s) => chat(s, SECOND));
  assert.equal(reference.cached, 0);

  let first;
  let log = '';
  await withServer(['--kv-disk-dir', dir], async (s) => {
    first = await chat(s, FIRST);
    assert.equal(first.text, ANSWER);
    assert.equal(first.cached, 0);
    assert.ok(first.prompt > 1400, `a long prompt: ${first.prompt} tokens`);
    assert.equal(await metric(s.url, 'magnetar_kv_disk_saves_total{reason="cold"}'), 1);
    log = s.log;
  });
  assert.match(log(), /kv cache: saved shutdown checkpoint of \d+ tokens as [0-9a-f]{64}\.mkv/);

  // A new process on the same directory: the conversation's checkpoint is loaded, not prefilled.
  let restored;
  await withServer(['--kv-disk-dir', dir], async (s) => {
    const second = await chat(s, SECOND);
    const prefilled = await metric(s.url, 'magnetar_prefill_tokens_total');
    console.log(
      `restart: prompt ${second.prompt} tokens, ${second.cached} from disk, ${prefilled} ` +
        `prefilled (no cache: ${reference.prompt} prefilled)`,
    );
    assert.equal(second.prompt, reference.prompt);
    assert.ok(second.cached > first.prompt, 'the first prompt and its answer come from disk');
    assert.equal(prefilled, second.prompt - second.cached);
    assert.ok(prefilled < 40, `only the new turn is prefilled (${prefilled})`);
    assert.equal(second.text, reference.text, 'the same greedy answer as without a cache');
    assert.equal(await metric(s.url, 'magnetar_kv_disk_hits_total'), 1);
    assert.equal(await metric(s.url, 'magnetar_kv_disk_loaded_tokens_total'), second.cached);
    restored = s.log().match(/kv cache: restored (\d+) tokens from ([0-9a-f]{64}\.mkv)/);
    assert.ok(restored, s.log());
    assert.equal(Number(restored[1]), second.cached);
  });

  // Damage that file: the next server refuses it, deletes it, and serves from the system prompt's
  // cold checkpoint.
  const damaged = join(dir, restored[2]);
  flipByte(damaged, Math.floor(statSync(damaged).size / 2));
  await withServer(['--kv-disk-dir', dir], async (s) => {
    const again = await chat(s, SECOND);
    console.log(`damaged file: ${again.cached} tokens from the cold checkpoint`);
    assert.equal(again.text, reference.text, 'still the same answer');
    assert.ok(again.cached > 0 && again.cached < first.prompt, `fell back (${again.cached})`);
    assert.equal(await metric(s.url, 'magnetar_kv_disk_damaged_total'), 1);
    assert.match(s.log(), new RegExp(`kv cache: damaged ${restored[2]}: refused and deleted`));
    assert.equal(existsSync(damaged), false);
  });
});

test('a full disk (EFBIG) fails the saves, not the requests', async () => {
  const limited = join(root, 'limited');
  // 200 blocks (100 or 200 KiB, by the shell's unit) is far below one checkpoint of this prompt.
  const launcher = ['/bin/sh', '-c', 'ulimit -f 200 && exec "$@"', 'sh'];
  await withServer(
    ['--kv-disk-dir', limited],
    async (s) => {
      const r = await chat(s, FIRST);
      assert.equal(r.text, ANSWER);
      const again = await chat(s, SECOND);
      assert.ok(again.text.length > 0);
      assert.ok(await metric(s.url, 'magnetar_kv_disk_save_failures_total') >= 1);
      assert.equal(await metric(s.url, 'magnetar_kv_disk_entries'), 0);
      assert.match(s.log(), /kv cache: cold save failed: .*the file size limit was reached \(EFBIG\)/);
    },
    launcher,
  );
});

function serveSync(args) {
  const r = spawnSync(
    process.env.MAGNETAR,
    ['serve', '-m', process.env.MAGNETAR_TINY_MODEL, '--port', '0', ...args],
    { encoding: 'utf8', timeout: 120000 },
  );
  return { status: r.status, stderr: r.stderr };
}

test('unusable directories and options stop the server with exit 2', async () => {
  const file = join(root, 'a-file');
  writeFileSync(file, 'x');
  let r = serveSync(['--kv-disk-dir', file]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--kv-disk-dir .*a-file cannot be used: .*is not a directory/);

  r = serveSync(['--kv-disk-dir', dir, '--kv-cache-min-tokens', '600', '--kv-cache-cold-max-tokens', '100']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid --kv-cache-\* values: .*cold max tokens must be 0 or at least min/);

  r = serveSync(['--kv-disk-space-mb', '100']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--kv-disk-space-mb requires --kv-disk-dir/);

  await withServer(['--kv-disk-dir', dir], async () => {
    const second = serveSync(['--kv-disk-dir', dir]);
    assert.equal(second.status, 2);
    assert.match(second.stderr, /cannot be used: .*in use by another process \(pid \d+\)/);
  });
});
