// Every malformed or refused request gets the right status and the error body of the API it
// called: API keys, malformed JSON, wrong types, huge bodies, unknown models and endpoints,
// context overflow, a full queue; CORS; and a client that goes away cancels its generation.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { metric, startServer } from './harness.mjs';

const KEY = 'sekrit-key';
const AUTH = { Authorization: `Bearer ${KEY}` };

let strict;  // API key, small context and body limit, CORS
let busy;  // one session, a queue of one, a short keepalive

before(async () => {
  [strict, busy] = await Promise.all([
    startServer(['--ctx', '128', '--max-body-mb', '0.1', '--cors'], { MAGNETAR_API_KEY: KEY }),
    startServer(['--ctx', '4096', '--parallel', '1', '--max-queue', '1', '--keepalive-seconds', '0.2']),
  ]);
});

after(async () => {
  await Promise.all([strict.stop(), busy.stop()]);
});

async function post(server, path, body, headers = AUTH) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text, headers: res.headers };
}

function assertOpenAiError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.equal(typeof r.json.error.type, 'string');
  if (param !== undefined) assert.equal(r.json.error.param, param);
}

function assertAnthropicError(r, status, type) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.type, 'error');
  assert.equal(r.json.error.type, type);
  assert.equal(typeof r.json.error.message, 'string');
}

const CHAT = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
const MESSAGE = { max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] };

describe('API keys', () => {
  test('required on every endpoint, in each API shape', async () => {
    for (const path of ['/health', '/metrics', '/v1/models', '/v1/models/deepseek-v4-flash']) {
      const res = await fetch(`${strict.url}${path}`);
      assert.equal(res.status, 401, path);
      assert.equal((await res.json()).error.type, 'authentication_error');
    }
    assertOpenAiError(await post(strict, '/v1/chat/completions', CHAT, {}), 401);
    assertOpenAiError(
      await post(strict, '/v1/completions', { prompt: 'x' }, { Authorization: 'Bearer wrong' }),
      401,
    );
    assertOpenAiError(await post(strict, '/v1/responses', { input: 'x' }, {}), 401);
    assertAnthropicError(
      await post(strict, '/v1/messages', MESSAGE, { 'x-api-key': 'wrong' }),
      401,
      'authentication_error',
    );
    assertAnthropicError(
      await post(strict, '/v1/messages/count_tokens', MESSAGE, {}),
      401,
      'authentication_error',
    );
  });

  test('accepted as a Bearer token or as x-api-key', async () => {
    assert.equal((await fetch(`${strict.url}/health`, { headers: AUTH })).status, 200);
    assert.equal(
      (await fetch(`${strict.url}/v1/models`, { headers: { 'x-api-key': KEY } })).status,
      200,
    );
  });

  test('the SDKs report authentication errors', async () => {
    const openai = new OpenAI({ baseURL: `${strict.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(openai.models.list(), OpenAI.AuthenticationError);
    const anthropic = new Anthropic({ baseURL: strict.url, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(
      anthropic.messages.create({ model: 'deepseek-v4-flash', ...MESSAGE }),
      Anthropic.AuthenticationError,
    );
    const good = new OpenAI({ baseURL: `${strict.url}/v1`, apiKey: KEY });
    assert.equal((await good.models.list()).data.length, 1);
  });
});

describe('malformed requests', () => {
  test('malformed JSON', async () => {
    assertOpenAiError(await post(strict, '/v1/chat/completions', '{"messages": [}'), 400);
    assertOpenAiError(await post(strict, '/v1/responses', 'not json'), 400);
    assertAnthropicError(await post(strict, '/v1/messages', '{'), 400, 'invalid_request_error');
    assertOpenAiError(await post(strict, '/v1/chat/completions', '[1, 2]'), 400);
  });

  test('wrong types and values name the field', async () => {
    assertOpenAiError(
      await post(strict, '/v1/chat/completions', { ...CHAT, temperature: 'hot' }),
      400,
      'temperature',
    );
    assertOpenAiError(
      await post(strict, '/v1/chat/completions', { ...CHAT, max_tokens: -5 }),
      400,
      'max_tokens',
    );
    assertOpenAiError(await post(strict, '/v1/chat/completions', { messages: 'hi' }), 400, 'messages');
    assertOpenAiError(await post(strict, '/v1/chat/completions', { ...CHAT, n: 3 }), 400, 'n');
    assertOpenAiError(await post(strict, '/v1/completions', { prompt: 42 }), 400, 'prompt');
    assertOpenAiError(await post(strict, '/v1/responses', { input: 'x', stream: 1 }), 400, 'stream');
    assertOpenAiError(await post(strict, '/v1/responses', { input: [{ type: 5 }] }), 400);
    assertOpenAiError(
      await post(strict, '/v1/chat/completions', { messages: [{ role: 7, content: 'x' }] }),
      400,
    );
    assertAnthropicError(
      await post(strict, '/v1/messages', { ...MESSAGE, tool_choice: { type: 3 } }),
      400,
      'invalid_request_error',
    );
    assertAnthropicError(
      await post(strict, '/v1/messages/count_tokens', { messages: [{ role: 'user', content: 5 }] }),
      400,
      'invalid_request_error',
    );
    assertAnthropicError(
      await post(strict, '/v1/messages', { ...MESSAGE, stop_sequences: [1] }),
      400,
      'invalid_request_error',
    );
    assertAnthropicError(
      await post(strict, '/v1/messages', { max_tokens: 2, messages: [{ role: 'system' }] }),
      400,
      'invalid_request_error',
    );
  });

  test('huge bodies are refused with 413', async () => {
    const big = { ...CHAT, messages: [{ role: 'user', content: 'x'.repeat(200000) }] };
    assertOpenAiError(await post(strict, '/v1/chat/completions', big), 413);
    assertAnthropicError(
      await post(strict, '/v1/messages', { ...MESSAGE, system: 'y'.repeat(200000) }),
      413,
      'request_too_large',
    );
  });

  test('unknown models and endpoints are 404', async () => {
    const r = await post(strict, '/v1/chat/completions', { ...CHAT, model: 'gpt-4o' });
    assertOpenAiError(r, 404, 'model');
    assert.equal(r.json.error.code, 'model_not_found');
    assertAnthropicError(
      await post(strict, '/v1/messages', { ...MESSAGE, model: 'claude-x' }),
      404,
      'not_found_error',
    );
    assertOpenAiError(await post(strict, '/v1/nothing', {}), 404);
    const res = await fetch(`${strict.url}/v1/models/gpt-4o`, { headers: AUTH });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.code, 'model_not_found');
  });

  test('a prompt beyond the context is a 400 with the counts', async () => {
    const long = { messages: [{ role: 'user', content: 'word '.repeat(300) }] };
    const r = await post(strict, '/v1/chat/completions', long);
    assertOpenAiError(r, 400, 'messages');
    assert.equal(r.json.error.code, 'context_length_exceeded');
    assert.equal(r.json.error.n_ctx, 128);
    assert.ok(r.json.error.n_prompt_tokens >= 128);
    const a = await post(strict, '/v1/messages', { max_tokens: 5, ...long });
    assertAnthropicError(a, 400, 'invalid_request_error');
    assert.equal(a.json.error.n_ctx, 128);
    const sdk = new OpenAI({ baseURL: `${strict.url}/v1`, apiKey: KEY });
    await assert.rejects(
      sdk.chat.completions.create({ model: 'deepseek-v4-flash', ...long }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
    );
  });
});

describe('CORS', () => {
  test('preflight without a key, and headers on answers', async () => {
    const pre = await fetch(`${strict.url}/v1/chat/completions`, { method: 'OPTIONS' });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    const res = await fetch(`${strict.url}/health`, { headers: AUTH });
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
  });
});

describe('load and departures', () => {
  const LONG = { messages: [{ role: 'user', content: 'Tell a long story' }], max_tokens: 3000,
                 thinking: { type: 'disabled' }, stream: true };

  // Opens a stream and reads until it has seen `chunks` data events; returns the controller.
  async function openStream(body, chunks) {
    const controller = new AbortController();
    const res = await fetch(`${busy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    let seen = 0;
    let text = '';
    const decoder = new TextDecoder();
    while (seen < chunks) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
      seen = (text.match(/^data: /gm) ?? []).length;
    }
    return { controller, reader };
  }

  async function waitFor(predicate, ms = 20000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await predicate()) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  test('a disconnected streaming client cancels its generation', async () => {
    const before = await metric(busy.url, 'magnetar_generations_cancelled_total');
    const { controller } = await openStream(LONG, 3);
    controller.abort();
    assert.ok(
      await waitFor(async () =>
        (await metric(busy.url, 'magnetar_generations_cancelled_total')) === before + 1),
      'cancelled',
    );
    assert.equal(await metric(busy.url, 'magnetar_busy_sessions'), 0);
  });

  test('a disconnected non-streaming client cancels its generation', async () => {
    const before = await metric(busy.url, 'magnetar_generations_cancelled_total');
    const controller = new AbortController();
    const pending = fetch(`${busy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...LONG, stream: false }),
      signal: controller.signal,
    }).catch(() => null);
    await waitFor(async () => (await metric(busy.url, 'magnetar_busy_sessions')) === 1);
    await new Promise((r) => setTimeout(r, 500));
    controller.abort();
    await pending;
    assert.ok(
      await waitFor(async () =>
        (await metric(busy.url, 'magnetar_generations_cancelled_total')) === before + 1),
      'cancelled',
    );
  });

  test('a slow non-streaming answer is kept alive and still parses', async () => {
    const r = await post(busy, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Write' }],
      max_tokens: 200,
      thinking: { type: 'disabled' },
    }, {});
    assert.equal(r.status, 200);
    assert.match(r.text, /^ +\{/, 'heartbeat spaces before the JSON (the answer took > 0.2 s)');
    assert.equal(r.json.object, 'chat.completion');
  });

  test('a full queue answers 429, in each API shape', async () => {
    const running = await openStream(LONG, 2);  // takes the only session
    const queued = fetch(`${busy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...LONG, stream: false, max_tokens: 1 }),
    });
    await waitFor(async () => (await metric(busy.url, 'magnetar_queue_depth')) === 1);
    const r = await post(busy, '/v1/chat/completions', CHAT, {});
    assertOpenAiError(r, 429);
    assert.equal(r.headers.get('retry-after'), '1');
    assertAnthropicError(
      await post(busy, '/v1/messages', { model: 'deepseek-v4-flash', ...MESSAGE }, {}),
      429,
      'rate_limit_error',
    );
    running.controller.abort();
    const done = await queued;
    assert.equal(done.status, 200, 'the queued request is served once the session is free');
  });
});
