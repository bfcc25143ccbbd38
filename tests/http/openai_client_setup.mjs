// The `openai` npm client every tests/http/*.test.mjs uses: from $TROUPE_NODE_MODULES when
// installed (tools/openai-client-test sets it), else a normal import; pointed at $TROUPE_URL.
import { createRequire } from 'node:module';
import path from 'node:path';

function loadOpenAI() {
  const dir = process.env.TROUPE_NODE_MODULES;
  const mod = dir ? createRequire(path.join(dir, 'noop.js'))('openai') : null;
  return mod ? (mod.OpenAI ?? mod.default ?? mod) : import('openai').then((m) => m.default);
}

export const OpenAI = await loadOpenAI();
export const root = (process.env.TROUPE_URL ?? 'http://127.0.0.1:8000').replace(/\/$/, '');
export const baseURL = root + '/v1';
export const model = process.env.TROUPE_MODEL ?? 'tiny';
export const client = new OpenAI({ baseURL, apiKey: process.env.TROUPE_API_KEY ?? 'none', maxRetries: 0, timeout: 60000 });
