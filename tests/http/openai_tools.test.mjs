// Tool calls through the official `openai` npm client against a live `troupe serve` (run by
// tools/openai-client-test, environment as in openai_client.test.mjs). The server runs without
// --enable-auto-tool-choice: "auto" must be refused; "required" and a named function work
// anyway, by constrained decoding (the grammar engine makes the model write the call's JSON).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OpenAI, client, model } from './openai_client_setup.mjs';
const messages = [{ role: 'user', content: 'Which unit do you like?' }];

// Small closed schemas, so a random-weight model under the grammar finishes within max_tokens.
const tools = [
  {
    type: 'function',
    function: {
      name: 'set_unit',
      description: 'Pick a temperature unit.',
      parameters: {
        type: 'object',
        properties: { unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['unit'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'set_flag',
      parameters: {
        type: 'object',
        properties: { on: { type: 'boolean' } },
        required: ['on'],
        additionalProperties: false,
      },
    },
  },
];
const named = { type: 'function', function: { name: 'set_unit' } };

function checkCall(call) {
  assert.ok(['set_unit', 'set_flag'].includes(call.function.name), call.function.name);
  const args = JSON.parse(call.function.arguments);
  if (call.function.name === 'set_unit') assert.ok(['celsius', 'fahrenheit'].includes(args.unit), call.function.arguments);
  else assert.equal(typeof args.on, 'boolean');
}

async function streamCalls(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.finish_reason) finish = c.finish_reason;
      for (const t of c.delta.tool_calls ?? []) {
        if (t.index === calls.length) {
          assert.equal(t.type, 'function');
          assert.match(t.id, /^chatcmpl-tool-/);
          calls.push({ id: t.id, function: { name: t.function.name, arguments: t.function.arguments ?? '' } });
        } else {
          calls[t.index].function.arguments += t.function?.arguments ?? '';
        }
      }
    }
  }
  return { calls, finish };
}

test('tool_choice "auto" without --enable-auto-tool-choice is a 400 naming tool_choice', async () => {
  for (const extra of [{}, { tool_choice: 'auto' }]) {
    await assert.rejects(client.chat.completions.create({ model, messages, tools, ...extra }), (e) => {
      assert.ok(e instanceof OpenAI.APIError);
      assert.equal(e.status, 400);
      assert.equal(e.param, 'tool_choice');
      assert.match(e.message, /--enable-auto-tool-choice/);
      return true;
    });
  }
});

test('bad tools are a 400 naming the field', async () => {
  const bad = [{ type: 'function', function: { description: 'no name' } }];
  await assert.rejects(client.chat.completions.create({ model, messages, tools: bad, tool_choice: 'none' }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, 'tools[0].function.name');
    return true;
  });
});

test('tool_choice "none" and a tool-call history answer text', async () => {
  const history = [
    ...messages,
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_0', type: 'function', function: { name: 'set_unit', arguments: '{"unit": "celsius"}' } }],
    },
    { role: 'tool', tool_call_id: 'call_0', content: 'ok' },
  ];
  const r = await client.chat.completions.create({ model, messages: history, tools, tool_choice: 'none', max_tokens: 4 });
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.deepEqual(r.choices[0].message.tool_calls, []);
});

// Needs the grammar engine (constrained decoding of OutputConstraint::json_schema).
test('tool_choice naming a function: the call, whole and streamed', async () => {
  const params = { model, messages, tools, tool_choice: named, max_tokens: 200, temperature: 0 };
  const r = await client.chat.completions.create(params);
  const message = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(message.tool_calls.length, 1);
  assert.equal(message.tool_calls[0].type, 'function');
  assert.equal(message.tool_calls[0].function.name, 'set_unit');
  checkCall(message.tool_calls[0]);
  const s = await streamCalls(params);
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.calls.length, 1);
  assert.equal(s.calls[0].function.name, 'set_unit');
  assert.equal(s.calls[0].function.arguments, message.tool_calls[0].function.arguments);
});

// Needs the grammar engine.
test('tool_choice "required": at least one call, whole and streamed', async () => {
  const params = { model, messages, tools, tool_choice: 'required', max_tokens: 300, temperature: 0 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  const calls = r.choices[0].message.tool_calls;
  assert.ok(calls.length >= 1);
  for (const call of calls) checkCall(call);
  const s = await streamCalls(params);
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.calls.length, calls.length);
  s.calls.forEach((call, i) => {
    checkCall(call);
    assert.equal(call.function.name, calls[i].function.name);
    assert.equal(call.function.arguments, calls[i].function.arguments);
  });
});

// Needs the grammar engine: "required"'s array is limited to one item.
test('parallel_tool_calls false with "required": exactly one call', async () => {
  const params = { model, messages, tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 300, temperature: 0 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(r.choices[0].message.tool_calls.length, 1);
  checkCall(r.choices[0].message.tool_calls[0]);
  const s = await streamCalls(params);
  assert.equal(s.calls.length, 1);
});

// The Responses API's flat function tools, a named tool_choice (constrained decoding), and the
// next turn with the call and its output as input items.
test('responses.create with a function tool: a function_call item, whole and streamed, then its output', async () => {
  const flat = tools.map((t) => ({ type: 'function', ...t.function }));
  const params = { model, input: 'Which unit?', tools: flat, tool_choice: { type: 'function', name: 'set_unit' }, max_output_tokens: 200, temperature: 0 };
  const r = await client.responses.create(params);
  assert.equal(r.status, 'completed');
  const call = r.output.find((item) => item.type === 'function_call');
  assert.ok(call, JSON.stringify(r.output));
  assert.equal(call.name, 'set_unit');
  assert.match(call.id, /^fc_/);
  assert.equal(call.status, 'completed');
  checkCall({ function: { name: call.name, arguments: call.arguments } });
  assert.deepEqual(r.tools.map((t) => t.name), ['set_unit', 'set_flag']);

  const stream = await client.responses.create({ ...params, stream: true });
  let args = '';
  const types = [];
  let done = null;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'response.function_call_arguments.delta') args += event.delta;
    if (event.type === 'response.completed') done = event.response;
  }
  assert.ok(types.includes('response.function_call_arguments.done'), types.join(' '));
  assert.equal(args, call.arguments);
  assert.equal(done.output.find((item) => item.type === 'function_call').arguments, call.arguments);

  const next = await client.responses.create({
    model, tools: flat, tool_choice: 'none', max_output_tokens: 4, temperature: 0,
    input: [{ role: 'user', content: 'Which unit?' }, call, { type: 'function_call_output', call_id: call.call_id, output: 'ok' }],
  });
  assert.ok(['completed', 'incomplete'].includes(next.status), next.status);
  assert.equal(next.output.at(-1).type, 'message');
});
