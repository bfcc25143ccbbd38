// The official `openai` npm client against a live troupe server (node --test).
// TROUPE_URL: the server, e.g. http://127.0.0.1:8000; TROUPE_MODEL: the served model name (tiny);
// TROUPE_API_KEY: the key when the server has one; TROUPE_NODE_MODULES: where `openai` is
// installed (tools/openai-client-test sets it), else a normal import.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OpenAI, client, model } from './openai_client_setup.mjs';
const messages = [{ role: 'user', content: 'Say hello.' }];

test('models lists the served model', async () => {
  const list = await client.models.list();
  assert.ok(list.data.some((m) => m.id === model));
});

test('chat completion', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, seed: 1 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat completion, n=2 and logprobs', async () => {
  const r = await client.chat.completions.create({
    model, messages, max_tokens: 4, n: 2, seed: 7, logprobs: true, top_logprobs: 2,
  });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  for (const c of r.choices) assert.ok(Array.isArray(c.logprobs.content));
});

test('chat completion streaming with usage matches the non-streaming text', async () => {
  const params = { model, messages, max_tokens: 8, temperature: 0, seed: 3 };
  const whole = await client.chat.completions.create(params);
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.ok(['stop', 'length'].includes(finish));
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('text completion, plain and streaming', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

test('errors come back as OpenAI API errors', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }), (e) => {
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, 404);
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model, messages, max_tokens: -1 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, 'max_tokens');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }), (e) => {
    assert.equal(e.status, 400);
    return true;
  });
  await assert.rejects(client.completions.create({ model, prompt: 'x', temperature: 'hot' }), (e) => {
    assert.equal(e.status, 400);
    return true;
  });
});
