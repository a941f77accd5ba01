// The official OpenAI Node client (npm `openai`, pinned in package.json) against `ckv serve`,
// unchanged: chat (streamed and not), completions, models; the second turn of a conversation
// reports cached tokens; at budget 1.0 the greedy answer equals `ckv generate` on the same
// prompt. Run by ctest: node openai_client_test.mjs PATH/TO/ckv
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const ckv = process.argv[2];
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(join(tmpdir(), 'ckv-openai-'));
const config = JSON.parse(readFileSync(join(repo, 'models/qwen2-tokenizer/tokenizer_config.json')));
const template = join(work, 'qwen.jinja');
writeFileSync(template, config.chat_template);

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name} ${detail}`);
  }
}

// Starts ckv serve on an ephemeral port; resolves with its base URL once it is ready.
function startServer() {
  const proc = spawn(ckv, ['serve', '--model', join(repo, 'models/stories260k'),
    '--store', join(work, 'store'), '--port', '0', '--chat-template', template,
    '--served-model-name', 'stories', '--api-key', 'sk-test', '--store-min-tokens', '16'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no startup line: ${err}`)), 60000);
    proc.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1] });
      }
    });
    proc.on('exit', (code) => reject(new Error(`ckv serve exited ${code}: ${err}`)));
  });
}

// Waits until the background store writer has nothing queued or in progress.
async function storesDone(url) {
  for (let i = 0; i < 400; i++) {
    const text = await (await fetch(`${url}/metrics`, { headers: { Authorization: 'Bearer sk-test' } })).text();
    const m = text.match(/^ckv_store_pending (\d+)$/m);
    if (m && Number(m[1]) === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the store writer did not finish');
}

const { proc, url } = await startServer();
try {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-test', maxRetries: 0 });

  const models = await client.models.list();
  check('models.list', models.data.length === 1 && models.data[0].id === 'stories');

  const messages = [{ role: 'user', content: 'Once upon a time there was a little dog named Max.' }];
  // Not stored, so that the streamed request below is a plain prefill too and must match.
  const chat = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 16, temperature: 0, ckv_store: false });
  const answer = chat.choices[0].message.content;
  check('chat.completions', chat.object === 'chat.completion' && typeof answer === 'string' &&
        chat.usage.completion_tokens === 16, JSON.stringify(chat));

  const stream = await client.chat.completions.create({
    model: 'stories', messages, max_tokens: 16, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  let streamed = '';
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length > 0) streamed += chunk.choices[0].delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  check('chat.completions stream', streamed === answer && chunks >= 10 && usage?.completion_tokens === 16,
    `${JSON.stringify(streamed)} vs ${JSON.stringify(answer)}, ${chunks} chunks`);

  const completion = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  check('completions', completion.object === 'text_completion' && completion.choices[0].text.length > 0);

  // The next turn starts with this turn's context: cached tokens > 0.
  await storesDone(url);
  const turn2 = await client.chat.completions.create({
    model: 'stories', max_tokens: 8, temperature: 0,
    messages: [...messages, { role: 'assistant', content: answer }, { role: 'user', content: 'What did Max do?' }] });
  const cached = turn2.usage.prompt_tokens_details?.cached_tokens ?? 0;
  check('second turn cached_tokens > 0', cached > 0, JSON.stringify(turn2.usage));

  // Budget 1.0 (exact attention) over a stored prefix equals ckv generate on the same prompt.
  const story = readFileSync(join(repo, 'data/demo_story.txt'), 'utf8').slice(0, 900);
  await client.completions.create({ model: 'stories', prompt: story, max_tokens: 1, temperature: 0 });
  await storesDone(url);
  const prompt = `${story} The next day,`;
  const exact = await client.completions.create({ model: 'stories', prompt, max_tokens: 24, temperature: 0, ckv_budget: 1.0 });
  const generated = JSON.parse(execFileSync(ckv, ['generate', '--model', join(repo, 'models/stories260k'),
    '--prompt', prompt, '--max-tokens', '24', '--kv', 'bf16', '--json'])).text;
  check('budget 1.0 equals ckv generate', exact.choices[0].text === generated &&
        exact.usage.prompt_tokens_details.cached_tokens > 0,
  `${JSON.stringify(exact.choices[0].text)} vs ${JSON.stringify(generated)}; usage ${JSON.stringify(exact.usage)}`);

  try {
    await client.chat.completions.create({ model: 'gpt-4', messages, max_tokens: 4 });
    check('unknown model is a NotFoundError', false);
  } catch (e) {
    check('unknown model is a NotFoundError', e instanceof OpenAI.NotFoundError, String(e));
  }
  try {
    await new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 }).models.list();
    check('wrong key is an AuthenticationError', false);
  } catch (e) {
    check('wrong key is an AuthenticationError', e instanceof OpenAI.AuthenticationError, String(e));
  }
} catch (e) {
  check('no exception', false, String(e?.stack ?? e));
} finally {
  proc.kill('SIGTERM');
  const code = await new Promise((r) => proc.on('exit', (c) => r(c)));
  check('SIGTERM stops the server with exit 0', code === 0, `exit ${code}`);
  rmSync(work, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
