// The official OpenAI Node SDK against `magnetar serve`: models, chat completions (plain and
// streamed, thinking on and off, usage), legacy completions, Responses (plain and streamed), and a
// tool-call round trip driven by forced decoding.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { forcedCompletions, metric, startServer } from './harness.mjs';

const WEATHER_CALL =
  'I should look it up.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
  '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n' +
  '<｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>\n' +
  '</｜DSML｜invoke>\n</｜DSML｜tool_calls>';

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather forecast',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, days: { type: 'integer' } },
      },
    },
  },
];

let server;
let client;

before(async () => {
  const forced = forcedCompletions({
    'FORCE-GREETING': 'The user wants a greeting.</think>Hello from Magnetar!',
    'FORCE-PLAIN': 'Plain answer.',
    'weather in Paris': WEATHER_CALL,
    '<tool_result>': 'Sunny, then rain.</think>It will be sunny in Paris.',
  });
  server = await startServer(['--parallel', '2', '--test-forced-completion', forced]);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
});

after(async () => {
  assert.equal(await server.stop(), 0, 'clean shutdown on SIGTERM');
});

describe('models', () => {
  test('list and retrieve', async () => {
    const page = await client.models.list();
    assert.deepEqual(
      page.data.map((m) => m.id),
      ['deepseek-v4-flash'],
    );
    const model = await client.models.retrieve('deepseek-v4-flash');
    assert.equal(model.object, 'model');
    await assert.rejects(client.models.retrieve('gpt-4o'), (e) => e.status === 404);
  });
});

describe('chat completions', () => {
  test('non-streaming, thinking on (default): reasoning and content split', async () => {
    const r = await client.chat.completions.create({
      model: 'deepseek-v4-flash',
      messages: [{ role: 'user', content: 'FORCE-GREETING please' }],
    });
    assert.match(r.id, /^chatcmpl-[0-9a-f]{24}$/);
    assert.equal(r.object, 'chat.completion');
    const m = r.choices[0].message;
    assert.equal(m.role, 'assistant');
    assert.equal(m.content, 'Hello from Magnetar!');
    assert.equal(m.reasoning_content, 'The user wants a greeting.');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.prompt_tokens > 0);
    assert.ok(r.usage.completion_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
  });

  test('non-streaming, thinking off: no reasoning', async () => {
    const r = await client.chat.completions.create({
      model: 'deepseek-chat',
      messages: [{ role: 'user', content: 'FORCE-PLAIN' }],
    });
    assert.equal(r.model, 'deepseek-chat');
    assert.equal(r.choices[0].message.content, 'Plain answer.');
    assert.equal(r.choices[0].message.reasoning_content, undefined);
  });

  test('streaming with usage: deltas add up to the answer', async () => {
    const stream = await client.chat.completions.create({
      model: 'deepseek-v4-flash',
      messages: [{ role: 'user', content: 'FORCE-GREETING again' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let reasoning = '';
    let content = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        reasoning += c.delta.reasoning_content ?? '';
        content += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    assert.equal(reasoning, 'The user wants a greeting.');
    assert.equal(content, 'Hello from Magnetar!');
    assert.equal(finish, 'stop');
    assert.ok(usage && usage.completion_tokens > 0);
  });

  test('sampled text from the random model respects max_tokens', async () => {
    const r = await client.chat.completions.create({
      model: 'deepseek-v4-flash',
      messages: [{ role: 'user', content: 'Say anything' }],
      max_tokens: 6,
      thinking: { type: 'disabled' },
      seed: 3,
    });
    assert.ok(r.usage.completion_tokens <= 6);
    assert.ok(['length', 'stop', 'tool_calls'].includes(r.choices[0].finish_reason));
  });

  test('tool call round trip: streamed call, then the result, with the live session reused', async () => {
    const stream = client.chat.completions.stream({
      model: 'deepseek-v4-flash',
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: TOOLS,
    });
    const names = [];
    let reasoning = '';
    stream.on('chunk', (chunk) => {
      const delta = chunk.choices[0]?.delta ?? {};
      reasoning += delta.reasoning_content ?? '';
      for (const t of delta.tool_calls ?? []) {
        if (t.function?.name) names.push(t.function.name);
      }
    });
    const done = await stream.finalChatCompletion();
    const choice = done.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.deepEqual(names, ['get_weather'], 'the name is sent once, first');
    const call = choice.message.tool_calls[0];
    assert.match(call.id, /^call_[0-9a-f]{32}$/);
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', days: 3 });
    assert.equal(reasoning, 'I should look it up.');

    const before = await metric(server.url, 'magnetar_cached_prompt_tokens_total');
    const next = await client.chat.completions.create({
      model: 'deepseek-v4-flash',
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        // The SDK's accumulator keeps only the last reasoning delta; the client sends it whole.
        {
          role: 'assistant',
          content: choice.message.content ?? '',
          reasoning_content: reasoning,
          tool_calls: choice.message.tool_calls,
        },
        { role: 'tool', tool_call_id: call.id, content: '{"forecast": "sunny"}' },
      ],
      tools: TOOLS,
    });
    assert.equal(next.choices[0].message.content, 'It will be sunny in Paris.');
    assert.ok(next.usage.prompt_tokens_details.cached_tokens > 0, 'the live session was reused');
    assert.equal(
      (await metric(server.url, 'magnetar_cached_prompt_tokens_total')) - before,
      next.usage.prompt_tokens_details.cached_tokens,
    );
  });
});

describe('completions', () => {
  test('raw continuation, plain and streamed', async () => {
    const r = await client.completions.create({
      model: 'deepseek-v4-flash',
      prompt: 'FORCE-PLAIN: once upon a time',
      max_tokens: 20,
    });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices[0].text, 'Plain answer.');
    const stream = await client.completions.create({
      model: 'deepseek-v4-flash',
      prompt: 'Once upon a time',
      max_tokens: 5,
      stream: true,
    });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.ok(['length', 'stop'].includes(finish));
  });
});

describe('responses', () => {
  test('non-streaming: reasoning item, message, usage', async () => {
    const r = await client.responses.create({
      model: 'deepseek-v4-flash',
      input: 'FORCE-GREETING via responses',
      instructions: 'Be nice.',
    });
    assert.match(r.id, /^resp_/);
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, 'Hello from Magnetar!');
    const reasoning = r.output.find((o) => o.type === 'reasoning');
    assert.equal(reasoning.content[0].text, 'The user wants a greeting.');
    assert.ok(r.usage.output_tokens_details.reasoning_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  });

  test('streaming with a function call, then its output', async () => {
    const tools = [
      { type: 'function', name: 'get_weather', parameters: TOOLS[0].function.parameters },
    ];
    const stream = client.responses.stream({
      model: 'deepseek-v4-flash',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'weather in Paris?' }] }],
      tools,
    });
    let deltas = '';
    stream.on('response.function_call_arguments.delta', (e) => {
      deltas += e.delta;
    });
    const r = await stream.finalResponse();
    assert.equal(r.status, 'completed');
    const call = r.output.find((o) => o.type === 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris', days: 3 });
    assert.equal(deltas, call.arguments, 'arguments were streamed');

    const next = await client.responses.create({
      model: 'deepseek-v4-flash',
      input: [
        { role: 'user', content: 'weather in Paris?' },
        ...r.output,
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny' },
      ],
      tools,
    });
    assert.equal(next.output_text, 'It will be sunny in Paris.');
    assert.ok(next.usage.input_tokens_details.cached_tokens > 0);
  });

  test('max_output_tokens makes an incomplete response', async () => {
    const r = await client.responses.create({
      model: 'deepseek-v4-flash',
      input: 'Go on and on',
      max_output_tokens: 3,
      reasoning: { effort: 'none' },
    });
    if (r.status !== 'completed') {
      assert.equal(r.status, 'incomplete');
      assert.equal(r.incomplete_details.reason, 'max_output_tokens');
    }
    assert.ok(r.usage.output_tokens <= 3);
  });
});
