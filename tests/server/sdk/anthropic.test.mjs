// The official Anthropic Node SDK against `magnetar serve`: messages (plain and streamed,
// thinking on and off, usage, stop sequences), token counting, model aliases, and a tool_use
// round trip driven by forced decoding.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { forcedCompletions, startServer } from './harness.mjs';

const MODEL = 'claude-test-model';
const TOOLS = [
  {
    name: 'get_weather',
    description: 'Weather forecast',
    input_schema: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
    },
  },
];

let server;
let client;

before(async () => {
  const forced = forcedCompletions({
    'FORCE-GREETING': 'The user wants a greeting.</think>Hello from Magnetar!',
    'FORCE-PLAIN': 'Plain answer.',
    'weather in Paris':
      'Look it up.</think>Let me check.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
      '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n' +
      '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n' +
      '</｜DSML｜invoke>\n</｜DSML｜tool_calls>',
    '<tool_result>': 'Got it.</think>Sunny for two days.',
  });
  server = await startServer([
    '--parallel', '2', '--model-alias', MODEL, '--test-forced-completion', forced,
  ]);
  client = new Anthropic({ baseURL: server.url, apiKey: 'unused' });
});

after(async () => {
  assert.equal(await server.stop(), 0);
});

describe('messages', () => {
  test('non-streaming, thinking on (default): thinking and text blocks', async () => {
    const m = await client.messages.create({
      model: MODEL,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'FORCE-GREETING for Anthropic' }],
    });
    assert.match(m.id, /^msg_[0-9a-f]{24}$/);
    assert.equal(m.model, MODEL);
    assert.equal(m.stop_reason, 'end_turn');
    assert.equal(m.content[0].type, 'thinking');
    assert.equal(m.content[0].thinking, 'The user wants a greeting.');
    assert.match(m.content[0].signature, /^[0-9a-f]{64}$/);
    assert.deepEqual(m.content[1], { type: 'text', text: 'Hello from Magnetar!' });
    assert.ok(m.usage.input_tokens > 0);
    assert.ok(m.usage.output_tokens > 0);
    assert.equal(m.usage.cache_read_input_tokens, 0);
  });

  test('thinking disabled: text only', async () => {
    const m = await client.messages.create({
      model: MODEL,
      max_tokens: 100,
      system: 'Answer plainly.',
      thinking: { type: 'disabled' },
      messages: [{ role: 'user', content: [{ type: 'text', text: 'FORCE-PLAIN' }] }],
    });
    assert.deepEqual(m.content, [{ type: 'text', text: 'Plain answer.' }]);
  });

  test('streaming: the accumulated message equals the deltas', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'FORCE-GREETING streamed' }],
    });
    let text = '';
    let thinking = '';
    stream.on('text', (delta) => {
      text += delta;
    });
    stream.on('thinking', (delta) => {
      thinking += delta;
    });
    const m = await stream.finalMessage();
    assert.equal(text, 'Hello from Magnetar!');
    assert.equal(thinking, 'The user wants a greeting.');
    assert.equal(m.content[1].text, text);
    assert.equal(m.stop_reason, 'end_turn');
    assert.ok(m.usage.output_tokens > 0);
  });

  test('stop sequences are reported as such', async () => {
    const m = await client.messages.create({
      model: MODEL,
      max_tokens: 100,
      stop_sequences: ['Magnetar'],
      messages: [{ role: 'user', content: 'FORCE-GREETING with a stop' }],
    });
    assert.equal(m.stop_reason, 'stop_sequence');
    assert.equal(m.stop_sequence, 'Magnetar');
    assert.equal(m.content[1].text, 'Hello from ');
  });

  test('max_tokens ends a sampled message', async () => {
    const m = await client.messages.create({
      model: MODEL,
      max_tokens: 4,
      messages: [{ role: 'user', content: 'Anything at all' }],
    });
    assert.ok(m.usage.output_tokens <= 4);
    assert.ok(['max_tokens', 'end_turn', 'tool_use'].includes(m.stop_reason));
  });

  test('tool_use round trip, streamed, with the live session reused', async () => {
    const question = { role: 'user', content: 'What is the weather in Paris?' };
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 200,
      tools: TOOLS,
      messages: [question],
    });
    let partial = '';
    stream.on('inputJson', (delta) => {
      partial += delta;
    });
    const m = await stream.finalMessage();
    assert.equal(m.stop_reason, 'tool_use');
    const use = m.content.find((b) => b.type === 'tool_use');
    assert.match(use.id, /^toolu_[0-9a-f]{32}$/);
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Paris', days: 2 });
    assert.deepEqual(JSON.parse(partial), use.input, 'the input was streamed');
    assert.equal(m.content.find((b) => b.type === 'text').text, 'Let me check.');

    const next = await client.messages.create({
      model: MODEL,
      max_tokens: 200,
      tools: TOOLS,
      messages: [
        question,
        { role: 'assistant', content: m.content },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 2 days' }],
        },
      ],
    });
    assert.equal(next.content.find((b) => b.type === 'text').text, 'Sunny for two days.');
    assert.ok(next.usage.cache_read_input_tokens > 0, 'the live session was reused');
  });
});

describe('count_tokens and models', () => {
  test('count_tokens matches the prompt a fresh request is charged', async () => {
    const params = {
      model: MODEL,
      system: 'Count me.',
      messages: [{ role: 'user', content: 'FORCE-PLAIN counting 12345' }],
    };
    const count = await client.messages.countTokens(params);
    const m = await client.messages.create({ ...params, max_tokens: 5 });
    assert.equal(count.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens);
  });

  test('an unknown model is a not_found_error', async () => {
    await assert.rejects(
      client.messages.create({
        model: 'claude-unknown',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e) => e.status === 404 && e.error?.error?.type === 'not_found_error',
    );
  });
});
