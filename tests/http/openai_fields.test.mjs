// vLLM's extra request fields and the drop-in serve flags through the official `openai` npm
// client (extra fields travel as extra body params) against a live `troupe serve` started the
// vLLM way: `troupe serve MODEL -tp 1 --served-model-name tiny tiny-alias --chat-template FILE
// --seed 0` (tools/openai-client-test). The model is the tiny random-weight Llama: its text means
// nothing, so each test forces tokens with logit_bias and checks what the fields do to them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, model, root } from './openai_client_setup.mjs';
const messages = [{ role: 'user', content: 'Say hello.' }];

async function tokenIds(text) {
  const r = await fetch(root + '/tokenize', { method: 'POST', body: JSON.stringify({ prompt: text, add_special_tokens: false }) });
  return (await r.json()).tokens;
}

const [A] = await tokenIds('A');
const EOS = [1, 4];         // <|end_of_text|>, <|eot_id|>
const SPECIAL = 2;          // <|start_header_id|>, special but not an end
const greedy = { temperature: 0, max_tokens: 4 };

test('every --served-model-name is listed and accepted; the first answers', async () => {
  const ids = (await client.models.list()).data.map((m) => m.id);
  assert.deepEqual(ids, ['tiny', 'tiny-alias']);
  const r = await client.completions.create({ model: 'tiny-alias', prompt: 'Hi', ...greedy });
  assert.equal(r.model, 'tiny');
});

test('/ping answers 200 on GET and POST', async () => {
  assert.equal((await fetch(root + '/ping')).status, 200);
  assert.equal((await fetch(root + '/ping', { method: 'POST' })).status, 200);
});

test('logit_bias forces a token; -100 bans it', async () => {
  const forced = await client.completions.create({ model, prompt: 'Hi', ...greedy, logit_bias: { [A]: 100 } });
  assert.equal(forced.choices[0].text, 'AAAA');
  // Ban the first greedy token: the first token changes.
  const plain = await client.completions.create({ model, prompt: 'Hi', ...greedy, logprobs: 0 });
  const firstIds = await tokenIds(plain.choices[0].logprobs.tokens[0]);
  assert.equal(firstIds.length, 1, 'the first greedy token round-trips through /tokenize');
  const first = firstIds[0];
  const banned = await client.completions.create({
    model, prompt: 'Hi', ...greedy, logprobs: 0, logit_bias: { [first]: -100 },
  });
  assert.notEqual(banned.choices[0].logprobs.tokens[0], plain.choices[0].logprobs.tokens[0]);
  await assert.rejects(
    client.completions.create({ model, prompt: 'Hi', ...greedy, logit_bias: { 999999: 1 } }),
    (e) => e.status === 400 && /logit_bias/.test(e.message));
});

test('min_tokens holds off EOS', async () => {
  const eosFirst = { model, messages, temperature: 0, max_tokens: 10, logit_bias: { [EOS[0]]: 100, [EOS[1]]: 100 } };
  const short = await client.chat.completions.create(eosFirst);
  assert.equal(short.choices[0].finish_reason, 'stop');
  assert.equal(short.usage.completion_tokens, 1);
  const held = await client.chat.completions.create({ ...eosFirst, min_tokens: 3 });
  assert.equal(held.choices[0].finish_reason, 'stop');
  assert.equal(held.usage.completion_tokens, 4);  // 3 tokens, then the EOS
});

test('include_stop_str_in_output keeps the stop string', async () => {
  const base = { model, prompt: 'Hi', temperature: 0, max_tokens: 8, stop: ['AA'], logit_bias: { [A]: 100 } };
  assert.equal((await client.completions.create(base)).choices[0].text, '');
  const kept = await client.completions.create({ ...base, include_stop_str_in_output: true });
  assert.equal(kept.choices[0].text, 'AA');
  assert.equal(kept.choices[0].finish_reason, 'stop');
});

test('skip_special_tokens and spaces_between_special_tokens', async () => {
  const base = { model, prompt: 'Hi', temperature: 0, max_tokens: 2, logit_bias: { [SPECIAL]: 100 } };
  const h = '<|start_header_id|>';
  assert.equal((await client.completions.create(base)).choices[0].text, '');
  assert.equal((await client.completions.create({ ...base, skip_special_tokens: false })).choices[0].text, `${h} ${h}`);
  const glued = await client.completions.create({ ...base, skip_special_tokens: false, spaces_between_special_tokens: false });
  assert.equal(glued.choices[0].text, `${h}${h}`);
  // The EOS that ends the output is left out of it, as vLLM does, unless include_stop_str_in_output.
  const eos = { model, prompt: 'Hi', temperature: 0, max_tokens: 4, skip_special_tokens: false, logit_bias: { [EOS[1]]: 100 } };
  const ended = await client.completions.create(eos);
  assert.equal(ended.choices[0].finish_reason, 'stop');
  assert.equal(ended.choices[0].text, '');
  assert.equal((await client.completions.create({ ...eos, include_stop_str_in_output: true })).choices[0].text, '<|eot_id|>');
});

test('echo puts the prompt before the completion', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon', ...greedy, echo: true, logit_bias: { [A]: 100 } });
  assert.equal(r.choices[0].text, 'Once uponAAAA');
});

test('continue_final_message and chat echo continue the assistant turn', async () => {
  const conv = [...messages, { role: 'assistant', content: 'Hello' }];
  const r = await client.chat.completions.create({
    model, messages: conv, ...greedy, logit_bias: { [A]: 100 },
    continue_final_message: true, add_generation_prompt: false, echo: true,
  });
  assert.equal(r.choices[0].message.content, 'HelloAAAA');
  const closed = await client.chat.completions.create({ model, messages: conv, ...greedy, add_generation_prompt: false });
  assert.ok(r.usage.prompt_tokens < closed.usage.prompt_tokens, 'the open turn has no <|eot_id|>');
  await assert.rejects(
    client.chat.completions.create({ model, messages: conv, ...greedy, continue_final_message: true }),
    (e) => e.status === 400 && e.error?.param === 'continue_final_message');
});

test('chat_template_kwargs reach the --chat-template', async () => {
  const plain = await client.chat.completions.create({ model, messages, ...greedy });
  const thinking = await client.chat.completions.create({ model, messages, ...greedy, chat_template_kwargs: { thinking: true } });
  assert.ok(thinking.usage.prompt_tokens > plain.usage.prompt_tokens);
});

test('user and unknown fields are accepted; best_of, images and streamed prompt_logprobs are clear 400s', async () => {
  const r = await client.chat.completions.create({ model, messages, ...greedy, user: 'alice', some_future_field: 1 });
  assert.equal(r.choices.length, 1);
  await assert.rejects(client.completions.create({ model, prompt: 'Hi', ...greedy, best_of: 3 }),
    (e) => e.status === 400 && e.error?.param === 'best_of');
  const image = [{ role: 'user', content: [{ type: 'text', text: 'what?' }, { type: 'image_url', image_url: { url: 'http://x/y.png' } }] }];
  await assert.rejects(client.chat.completions.create({ model, messages: image, ...greedy }),
    (e) => e.status === 400 && /image_url/.test(e.message));
  await assert.rejects(client.completions.create({ model, prompt: 'Hi', ...greedy, prompt_logprobs: 1, stream: true }),
    (e) => e.status === 400 && e.error?.param === 'prompt_logprobs');
});

test('prompt_logprobs: one entry per prompt token, the first null, the prompt token and the top k', async () => {
  const prompt = await tokenIds('The quick brown fox');
  const r = await client.completions.create({ model, prompt, ...greedy, prompt_logprobs: 2 });
  const entries = r.choices[0].prompt_logprobs;
  assert.equal(entries.length, prompt.length);
  assert.equal(entries[0], null);
  for (let j = 1; j < prompt.length; ++j) {
    const own = entries[j][String(prompt[j])];
    assert.ok(own && own.logprob <= 0 && own.rank >= 1 && typeof own.decoded_token === 'string');
    const ranks = Object.values(entries[j]).map((e) => e.rank).sort((a, b) => a - b);
    assert.deepEqual(ranks.slice(0, 2), [1, 2]);
  }
  const chat = await client.chat.completions.create({ model, messages, ...greedy, prompt_logprobs: 0 });
  assert.equal(chat.prompt_logprobs.length, chat.usage.prompt_tokens);
  assert.ok(chat.prompt_logprobs.slice(1).every((e) => Object.keys(e).length === 1));
});
