// troupe-demo's problems through the official `openai` npm client against a live troupe server:
// every problem whole and streamed (16 at a time), the answer read from `content` and the
// reasoning from `reasoning_content` (the server runs the deepseek_r1 reasoning parser).
// TROUPE_URL, TROUPE_MODEL, TROUPE_PROBLEMS (problems.json), TROUPE_NODE_MODULES as in
// tests/http/openai_client.test.mjs. Prints one JSON line:
// {"whole": {"correct", "total", "with_reasoning"}, "streamed": {...}, "seconds"}
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

function loadOpenAI() {
  const dir = process.env.TROUPE_NODE_MODULES;
  const mod = dir ? createRequire(path.join(dir, 'noop.js'))('openai') : null;
  return mod ? (mod.OpenAI ?? mod.default ?? mod) : import('openai').then((m) => m.default);
}

const OpenAI = await loadOpenAI();
const baseURL = process.env.TROUPE_URL.replace(/\/$/, '') + '/v1';
const model = process.env.TROUPE_MODEL;
const problems = JSON.parse(readFileSync(process.env.TROUPE_PROBLEMS, 'utf8')).problems;
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 300000 });

async function whole(problem) {
  const r = await client.chat.completions.create({ model, messages: problem.messages, max_tokens: 400, temperature: 0 });
  const m = r.choices[0].message;
  return { content: m.content ?? '', reasoning: m.reasoning_content ?? '' };
}

async function streamed(problem) {
  const stream = await client.chat.completions.create({
    model, messages: problem.messages, max_tokens: 400, temperature: 0, stream: true,
  });
  let content = '';
  let reasoning = '';
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      content += c.delta.content ?? '';
      reasoning += c.delta.reasoning_content ?? '';
    }
  }
  return { content, reasoning };
}

async function judge(ask) {
  const result = { correct: 0, total: problems.length, with_reasoning: 0, wrong: [] };
  let next = 0;
  async function lane() {
    while (next < problems.length) {
      const i = next++;
      const { content, reasoning } = await ask(problems[i]);
      if (content.trim() === problems[i].answer) result.correct += 1;
      else if (result.wrong.length < 5) result.wrong.push({ index: i, content });
      if (reasoning.trim().length > 0) result.with_reasoning += 1;
    }
  }
  await Promise.all(Array.from({ length: 16 }, lane));
  return result;
}

const start = Date.now();
const report = { whole: await judge(whole), streamed: await judge(streamed) };
report.seconds = (Date.now() - start) / 1000;
console.log(JSON.stringify(report));
