// Drives Atrium's /v1 API with the official TypeScript SDK through the features that must pass unchanged:
// extended thinking (sent back with its signature), tool use (a tool_result answered), a PDF document, prompt
// caching (cache write then read) and count_tokens, in JSON and streams. Prints one JSON object for
// tests/chat/test_sdk_features.py. Env: ATRIUM_BASE_URL, ATRIUM_API_KEY (a power_user's key).
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic({ apiKey: process.env.ATRIUM_API_KEY, baseURL: process.env.ATRIUM_BASE_URL, maxRetries: 0 });
const model = 'claude-sonnet-5-5';
const out = {};

// Extended thinking: JSON, then the blocks sent back as they came; and a stream.
const ask = [{ role: 'user', content: 'Why is the sky blue?' }];
const thinking = { type: 'enabled', budget_tokens: 1024 };
const first = await client.messages.create({ model, max_tokens: 2048, thinking, messages: ask });
const second = await client.messages.create({
  model, max_tokens: 2048, thinking,
  messages: [...ask, { role: 'assistant', content: first.content }, { role: 'user', content: 'And at sunset?' }],
});
const deltas = new Set();
const stream = client.messages.stream({ model, max_tokens: 2048, thinking, messages: ask });
stream.on('streamEvent', (event) => { if (event.type === 'content_block_delta') deltas.add(event.delta.type); });
const streamed = await stream.finalMessage();
out.thinking = {
  kinds: first.content.map((b) => b.type), signed: Boolean(first.content[0].signature),
  second_stop: second.stop_reason, stream_kinds: streamed.content.map((b) => b.type),
  stream_signed: Boolean(streamed.content[0].signature), deltas: [...deltas].sort(),
};

// Tool use: the call streamed (input assembled from input_json deltas), its result answered.
const tools = [{
  name: 'get_weather', description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];
const toolAsk = [{ role: 'user', content: 'Use get_weather: what is the weather in Paris?' }];
const called = await client.messages.stream({ model, max_tokens: 256, tools, messages: toolAsk }).finalMessage();
const use = called.content.find((b) => b.type === 'tool_use');
const answered = await client.messages.create({
  model, max_tokens: 256, tools,
  messages: [...toolAsk, { role: 'assistant', content: called.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18 C, sunny' }] }],
});
out.tools = { stop: called.stop_reason, name: use.name, input: use.input, answer: answered.content[0].text };

// A two-page PDF.
const pdf = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n'
  + '2 0 obj << /Type /Pages /Count 2 >> endobj\n3 0 obj << /Type /Page >> endobj\n'
  + '4 0 obj << /Type /Page >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n').toString('base64');
const doc = await client.messages.create({
  model, max_tokens: 256, messages: [{ role: 'user', content: [
    { type: 'document', title: 'Node report', source: { type: 'base64', media_type: 'application/pdf', data: pdf } },
    { type: 'text', text: 'Summarise it.' }] }],
});
out.document = { text: doc.content[0].text };

// Prompt caching: the same long system prompt twice, streamed the second time.
const system = [{ type: 'text', text: 'You are the archivist of a large library. '.repeat(150),
  cache_control: { type: 'ephemeral' } }];
const wrote = await client.messages.create({ model, max_tokens: 64, system, messages: [{ role: 'user', content: 'Maps?' }] });
const read = await client.messages.stream({ model, max_tokens: 64, system, messages: [{ role: 'user', content: 'Atlases?' }] }).finalMessage();
out.cache = { written: wrote.usage.cache_creation_input_tokens, read: read.usage.cache_read_input_tokens,
  read_written: read.usage.cache_creation_input_tokens };

const counted = await client.messages.countTokens({ model, messages: ask });
out.count_tokens = counted.input_tokens;
console.log(JSON.stringify(out));
