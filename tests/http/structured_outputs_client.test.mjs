// Structured outputs through the official `openai` npm client against a live troupe server
// (random-weight llama-tiny, temperature 1): response_format json_schema whole and streamed, and
// vLLM's guided_choice / guided_regex; every output parses and validates; a bad schema is a 400.
// Environment as tests/http/openai_client.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, model } from './openai_client_setup.mjs';
const messages = [{ role: 'user', content: 'Describe a person as JSON.' }];

const schema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 6 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pets: { type: 'array', items: { enum: ['cat', 'dog', '日本'] }, maxItems: 3 },
    nick: { anyOf: [{ type: 'string', maxLength: 3 }, { type: 'null' }] },
  },
  required: ['name', 'age', 'pets'],
};

// The keywords the schema above uses; returns '' or why not.
function check(v, s, at = '$') {
  if (s.enum) return s.enum.some((e) => e === v) ? '' : `${at}: not in enum`;
  if (s.anyOf) return s.anyOf.some((b) => check(v, b, at) === '') ? '' : `${at}: no anyOf branch`;
  if (s.type === 'null') return v === null ? '' : `${at}: not null`;
  if (s.type === 'string') {
    if (typeof v !== 'string') return `${at}: not a string`;
    return [...v].length <= (s.maxLength ?? Infinity) ? '' : `${at}: too long`;
  }
  if (s.type === 'integer') {
    if (!Number.isInteger(v)) return `${at}: not an integer`;
    return v >= s.minimum && v <= s.maximum ? '' : `${at}: out of range`;
  }
  if (s.type === 'array') {
    if (!Array.isArray(v) || v.length > s.maxItems) return `${at}: bad array`;
    for (const [i, x] of v.entries()) { const e = check(x, s.items, `${at}[${i}]`); if (e) return e; }
    return '';
  }
  if (s.type === 'object') {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at}: not an object`;
    for (const r of s.required) if (!(r in v)) return `${at}: missing ${r}`;
    for (const [k, x] of Object.entries(v)) {
      if (!s.properties[k]) return `${at}: extra ${k}`;
      const e = check(x, s.properties[k], `${at}.${k}`);
      if (e) return e;
    }
    return '';
  }
  return `${at}: unknown schema`;
}

const responseFormat = { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } };

test('response_format json_schema: every output parses and validates', async () => {
  for (let seed = 1; seed <= 4; ++seed) {
    const r = await client.chat.completions.create({
      model, messages, max_tokens: 300, temperature: 1, seed, response_format: responseFormat,
    });
    const text = r.choices[0].message.content;
    assert.equal(r.choices[0].finish_reason, 'stop', text);
    assert.equal(check(JSON.parse(text), schema), '', text);
  }
});

test('response_format json_schema, streamed', async () => {
  for (let seed = 5; seed <= 7; ++seed) {
    const stream = await client.chat.completions.create({
      model, messages, max_tokens: 300, temperature: 1, seed, stream: true, response_format: responseFormat,
    });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    assert.equal(finish, 'stop', text);
    assert.equal(check(JSON.parse(text), schema), '', text);
  }
});

test('guided_choice and guided_regex (vLLM fields)', async () => {
  const choice = await client.chat.completions.create({
    model, messages, max_tokens: 20, temperature: 1, seed: 3, guided_choice: ['alpha', 'beta', 'gamma ray'],
  });
  assert.ok(['alpha', 'beta', 'gamma ray'].includes(choice.choices[0].message.content), choice.choices[0].message.content);
  const regex = await client.completions.create({
    model, prompt: 'Code:', max_tokens: 20, temperature: 1, seed: 4, guided_regex: '[A-Z]{2}-\\d{3}',
  });
  assert.match(regex.choices[0].text, /^[A-Z]{2}-\d{3}$/);
});

test('a bad schema is a 400 naming response_format', async () => {
  await assert.rejects(
    client.chat.completions.create({
      model, messages, max_tokens: 5,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', not: {} } } },
    }),
    (e) => e.status === 400 && /'not'/.test(e.message) && (e.param ?? e.error?.param) === 'response_format',
  );
});
