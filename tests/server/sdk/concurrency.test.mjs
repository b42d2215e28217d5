// 32 streaming clients (half OpenAI chat, half Anthropic messages) for a bounded time against a
// server with 8 live sessions and a queue of 32: every response must be complete (finish reason
// and usage for OpenAI, message_stop for Anthropic) and no request may fail. Prints the totals.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { metric, startServer } from './harness.mjs';

const CLIENTS = 32;
const SECONDS = Number(process.env.MAGNETAR_CONCURRENCY_SECONDS ?? 20);

let server;

before(async () => {
  server = await startServer(['--parallel', '8', '--max-queue', '32', '--quiet']);
});

after(async () => {
  assert.equal(await server.stop(), 0);
});

async function openaiTurn(client, i, n) {
  const stream = await client.chat.completions.create({
    model: 'deepseek-v4-flash',
    messages: [{ role: 'user', content: `Client ${i}, request ${n}: say something.` }],
    max_tokens: 16,
    thinking: { type: 'disabled' },
    stream: true,
    stream_options: { include_usage: true },
  });
  let finish = null;
  let usage = null;
  let text = '';
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.ok(finish, 'a finish reason');
  assert.ok(usage, 'a usage chunk');
  assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 16);
  return usage.completion_tokens;
}

async function anthropicTurn(client, i, n) {
  const stream = client.messages.stream({
    model: 'deepseek-v4-flash',
    max_tokens: 16,
    thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: `Client ${i}, request ${n}: say something.` }],
  });
  let stopped = false;
  stream.on('streamEvent', (e) => {
    if (e.type === 'message_stop') stopped = true;
  });
  const m = await stream.finalMessage();
  assert.ok(stopped, 'message_stop');
  assert.ok(m.stop_reason);
  assert.ok(m.usage.output_tokens >= 1 && m.usage.output_tokens <= 16);
  return m.usage.output_tokens;
}

test(`${CLIENTS} streaming clients for ${SECONDS} s`, async () => {
  const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL: server.url, apiKey: 'x', maxRetries: 0 });
  const deadline = Date.now() + SECONDS * 1000;
  let requests = 0;
  let tokens = 0;
  const errors = [];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      for (let n = 0; Date.now() < deadline; ++n) {
        try {
          // Read the result first: `tokens += await ...` would read `tokens` before awaiting.
          const generated =
            i % 2 === 0 ? await openaiTurn(openai, i, n) : await anthropicTurn(anthropic, i, n);
          tokens += generated;
          ++requests;
        } catch (e) {
          errors.push(`client ${i} request ${n}: ${e.message}`);
        }
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const steps = await metric(server.url, 'magnetar_engine_steps_total');
  const items = await metric(server.url, 'magnetar_engine_batch_items_total');
  console.log(
    `concurrency: ${CLIENTS} clients, ${seconds.toFixed(1)} s: ${requests} requests complete, ` +
      `${tokens} tokens generated, ${errors.length} errors; mean batch ${(items / steps).toFixed(2)} ` +
      `sessions/step over ${steps} steps`,
  );
  assert.deepEqual(errors, []);
  assert.ok(requests >= CLIENTS, 'every client finished at least one request');
  assert.ok(items / steps > 2, 'requests were decoded together');
  assert.equal(await metric(server.url, 'magnetar_busy_sessions'), 0);
  assert.equal(await metric(server.url, 'magnetar_queue_depth'), 0);
  assert.equal(await metric(server.url, 'magnetar_completion_tokens_total'), tokens);
});
