// Drives Atrium's /v1 API with the official TypeScript SDK; prints one JSON object for tests/chat/test_sdk.py.
// Env: ATRIUM_BASE_URL, ATRIUM_API_KEY (basic_user), ATRIUM_CASES (JSON list of error cases to run),
// ATRIUM_ONLY_CASES=1 to skip the successful calls (when the test has made every provider fail).
import Anthropic from '@anthropic-ai/sdk';

const baseURL = process.env.ATRIUM_BASE_URL;
const client = new Anthropic({ apiKey: process.env.ATRIUM_API_KEY, baseURL, maxRetries: 0 });
const out = {};

if (!process.env.ATRIUM_ONLY_CASES) {
const created = await client.messages.create({
  model: 'claude-sonnet-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello from Node' }],
});
out.create = { type: created.type, model: created.model, text: created.content[0].text, usage: created.usage };

const stream = client.messages.stream({
  model: 'claude-haiku-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'Stream from Node' }],
});
let streamed = '';
stream.on('text', (text) => { streamed += text; });
const final = await stream.finalMessage();
out.stream = { text: streamed, final_text: final.content[0].text, stop_reason: final.stop_reason, usage: final.usage };
}

const errorClasses = {
  BadRequestError: Anthropic.BadRequestError, AuthenticationError: Anthropic.AuthenticationError,
  PermissionDeniedError: Anthropic.PermissionDeniedError, NotFoundError: Anthropic.NotFoundError,
  RateLimitError: Anthropic.RateLimitError, OverloadedError: Anthropic.OverloadedError,
  InternalServerError: Anthropic.InternalServerError,
};
out.errors = {};
for (const item of JSON.parse(process.env.ATRIUM_CASES || '[]')) {
  const c = new Anthropic({ apiKey: item.key || process.env.ATRIUM_API_KEY, baseURL: item.base_url || baseURL,
    maxRetries: 0 });
  try {
    await c.messages.create(item.body);
    out.errors[item.name] = { raised: null };
  } catch (err) {
    const expected = errorClasses[item.expect];
    out.errors[item.name] = {
      raised: err.constructor.name, status: err.status, instance: expected ? err instanceof expected : false,
      type: err.error?.error?.type ?? null,
    };
  }
}
console.log(JSON.stringify(out));
