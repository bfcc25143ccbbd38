// The Responses API (POST /v1/responses) through the official `openai` npm client against a live
// `troupe serve` of troupe-demo with the deepseek_r1 reasoning parser (node --test).
// TROUPE_URL, TROUPE_MODEL, TROUPE_NODE_MODULES as in tests/http/openai_client.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';

function loadOpenAI() {
  const dir = process.env.TROUPE_NODE_MODULES;
  const mod = dir ? createRequire(path.join(dir, 'noop.js'))('openai') : null;
  return mod ? (mod.OpenAI ?? mod.default ?? mod) : import('openai').then((m) => m.default);
}

const OpenAI = await loadOpenAI();
const baseURL = process.env.TROUPE_URL.replace(/\/$/, '') + '/v1';
const model = process.env.TROUPE_MODEL;
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 120000 });
const question = 'What is 4821 + 379?';

function reasoningText(response) {
  const item = response.output.find((o) => o.type === 'reasoning');
  return item ? item.content.map((c) => c.text).join('') : '';
}

// The message's text from the output items (finalResponse() of openai@4 adds no output_text).
function messageText(response) {
  return response.output.filter((o) => o.type === 'message')
    .flatMap((o) => o.content).filter((c) => c.type === 'output_text').map((c) => c.text).join('');
}

test('responses.create answers with a reasoning item and a message', async () => {
  const r = await client.responses.create({ model, input: question, max_output_tokens: 400, temperature: 0 });
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.model, model);
  assert.equal(r.output.length, 2);
  assert.equal(r.output[0].type, 'reasoning');
  assert.match(reasoningText(r), /I add 4821 and 379 column by column/);
  assert.equal(r.output[1].type, 'message');
  assert.equal(r.output[1].role, 'assistant');
  assert.equal(r.output_text.trim(), '5200');  // the client joins the output_text parts
  assert.equal(messageText(r), r.output_text);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  assert.ok(r.usage.output_tokens_details.reasoning_tokens > 0);
  assert.ok(r.usage.output_tokens_details.reasoning_tokens < r.usage.output_tokens);
});

test('streamed events carry the same reasoning and text', async () => {
  const whole = await client.responses.create({ model, input: question, max_output_tokens: 400, temperature: 0 });
  const stream = await client.responses.create({ model, input: question, max_output_tokens: 400, temperature: 0, stream: true });
  let text = '';
  let reasoning = '';
  const types = [];
  let last = null;
  let seq = 0;
  for await (const event of stream) {
    assert.equal(event.sequence_number, seq++);
    types.push(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.reasoning_text.delta') reasoning += event.delta;
    last = event;
  }
  assert.deepEqual(types.slice(0, 2), ['response.created', 'response.in_progress']);
  assert.equal(last.type, 'response.completed');
  assert.equal(text, whole.output_text);
  assert.equal(reasoning, reasoningText(whole));
  assert.equal(text.trim(), '5200');
  assert.equal(last.response.output[1].content[0].text, text);
  // The same prompt ran before: its first full KV block came from the prefix cache.
  assert.ok(whole.usage.input_tokens_details.cached_tokens > 0);
  assert.equal(last.response.usage.input_tokens_details.cached_tokens, whole.usage.input_tokens_details.cached_tokens);
});

test('responses.stream() accumulates the events into the final response', async () => {
  const stream = client.responses.stream({
    model,
    instructions: 'You are a helpful assistant.',
    input: [{ role: 'user', content: [{ type: 'input_text', text: question }] }],
    max_output_tokens: 400,
    temperature: 0,
  });
  const final = await stream.finalResponse();
  assert.equal(final.status, 'completed');
  assert.equal(messageText(final).trim(), '5200');
  assert.match(reasoningText(final), /I add 4821 and 379 column by column/);
  assert.equal(final.instructions, 'You are a helpful assistant.');
});

test('previous_response_id continues the conversation', async () => {
  const first = await client.responses.create({ model, input: question, max_output_tokens: 400, temperature: 0 });
  const second = await client.responses.create({
    model, input: 'Reverse the word planet.', previous_response_id: first.id, max_output_tokens: 400, temperature: 0,
  });
  assert.equal(second.previous_response_id, first.id);
  assert.equal(second.status, 'completed');
  // The earlier turn (question and answer) is part of the prompt now.
  assert.ok(second.usage.input_tokens > first.usage.input_tokens + messageText(first).length / 4);
  assert.match(second.output_text, /tenalp/);  // the model's answer to the second question
});

test('a short budget ends incomplete', async () => {
  const r = await client.responses.create({ model, input: question, max_output_tokens: 5, temperature: 0 });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.usage.output_tokens, 5);
});

test('unsupported fields come back as 400 errors naming them', async () => {
  await assert.rejects(
    client.responses.create({ model, input: question, previous_response_id: 'resp_123' }),
    (e) => e.status === 404 && e.param === 'previous_response_id',
  );
  await assert.rejects(
    client.responses.create({
      model,
      input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/a.png' }] }],
    }),
    (e) => e.status === 400 && e.param === 'input[0].content[0]',
  );
});
