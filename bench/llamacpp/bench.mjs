// llama.cpp's prefill and decode speed on a GGUF model, measured the way `ckv bench model`
// measures ours, so the two can run side by side on one machine (bench/llamacpp/compare.sh).
//
// llama.cpp comes from the npm package node-llama-cpp (prebuilt CPU builds, one per x86
// level, the best one picked at load); Debian 12 does not package llama.cpp. Each repetition:
// a fresh context, a prompt of random ids below 32,000 (as ckv's), prefill = the prompt's
// evaluation up to its first sampled token, decode = the next --decode-tokens greedy steps
// (each computes the full output head and samples, as ckv's loop takes an argmax). --batch B
// decodes B sequences of one context together: node-llama-cpp queues each sequence's next
// token and llama.cpp evaluates the queued tokens as one batch, as ckv's DecodeStep does.
// The best repetition is reported, as ckv does. Prints one JSON object.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {performance} from "node:perf_hooks";
import os from "node:os";

function parseArgs(argv) {
  const a = {model: null, promptTokens: 512, decodeTokens: 32, repeat: 3, threads: 0,
             batch: [], mmap: false, nextTokenOf: null};
  for (let i = 2; i < argv.length; ++i) {
    const k = argv[i], v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === "--model") a.model = v();
    else if (k === "--prompt-tokens") a.promptTokens = Number(v());
    else if (k === "--decode-tokens") a.decodeTokens = Number(v());
    else if (k === "--repeat") a.repeat = Number(v());
    else if (k === "--threads") a.threads = Number(v());
    else if (k === "--batch") a.batch = v().split(",").map(Number);
    else if (k === "--mmap") a.mmap = true;
    else if (k === "--next-token-of") a.nextTokenOf = v().split(",").map(Number);
    else throw new Error(`unknown option ${k}`);
  }
  if (!a.model) throw new Error("--model FILE.gguf is required");
  if (!a.threads) a.threads = os.availableParallelism();
  for (const n of [a.promptTokens, a.decodeTokens, a.repeat, a.threads, ...a.batch,
                   ...(a.nextTokenOf || []).map((id) => id + 1)]) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`bad number ${n}`);
  }
  return a;
}

// A small seeded generator: the same prompts every run.
function randomIds(n, seed) {
  let s = seed >>> 0;
  const out = [];
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(s % 32000);
  }
  return out;
}

// Prefill then `steps` decode steps on one sequence; returns [prefill s, decode s].
async function runOne(seq, prompt, steps) {
  const t0 = performance.now();
  let t1 = 0, n = 0;
  for await (const _ of seq.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
    if (n === 0) t1 = performance.now();
    if (n++ === steps) break;
  }
  if (n !== steps + 1) throw new Error(`generation stopped after ${n} of ${steps + 1} tokens`);
  return [(t1 - t0) / 1e3, (performance.now() - t1) / 1e3];
}

// B sequences: all prompts but their last token first (not timed), then B x steps tokens.
async function runBatch(context, b, promptTokens, steps, seed) {
  const seqs = [], prompts = [];
  for (let i = 0; i < b; ++i) {
    seqs.push(context.getSequence());
    prompts.push(randomIds(promptTokens, seed + i));
  }
  await Promise.all(seqs.map((s, i) => s.evaluateWithoutGeneratingNewTokens(prompts[i].slice(0, -1))));
  const t0 = performance.now();
  await Promise.all(seqs.map(async (s, i) => {
    let n = 0;
    for await (const _ of s.evaluate(prompts[i].slice(-1), {temperature: 0, yieldEogToken: true})) {
      if (++n === steps) break;
    }
    if (n !== steps) throw new Error(`sequence ${i} stopped after ${n} of ${steps} tokens`);
  }));
  return (b * steps) / ((performance.now() - t0) / 1e3);
}

const args = parseArgs(process.argv);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error,
                              maxThreads: args.threads});
const tLoad = performance.now();
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0, useMmap: args.mmap});
const loadS = (performance.now() - tLoad) / 1e3;

// --next-token-of IDS: the ten most probable next tokens after IDS (checks a converted model
// against `ckv logits` before its speed means anything), then exit.
if (args.nextTokenOf) {
  const context = await model.createContext({contextSize: args.nextTokenOf.length + 8,
                                             threads: args.threads});
  const seq = context.getSequence();
  for await (const out of seq.evaluateWithMetadata(args.nextTokenOf, {probabilities: true},
                                                   {temperature: 1, topK: 10, topP: 1})) {
    const top = [...out.probabilities.entries()].sort((x, y) => y[1] - x[1]).slice(0, 10);
    console.log(JSON.stringify({top: top.map(([id]) => id)}));
    break;
  }
  process.exit(0);
}

const ctxTokens = args.promptTokens + args.decodeTokens + 8;
let bestPrefill = Infinity, bestDecode = Infinity;
for (let r = 0; r < args.repeat; ++r) {
  const context = await model.createContext({contextSize: ctxTokens, sequences: 1,
                                             batchSize: Math.min(args.promptTokens, 512),
                                             threads: args.threads});
  const [p, d] = await runOne(context.getSequence(), randomIds(args.promptTokens, 7 + r),
                              args.decodeTokens);
  await context.dispose();
  bestPrefill = Math.min(bestPrefill, p);
  bestDecode = Math.min(bestDecode, d);
}
const out = {
  engine: "llama.cpp (node-llama-cpp)",
  model: args.model,
  threads: args.threads,
  mmap_weights: args.mmap,
  load_s: loadS,
  prompt_tokens: args.promptTokens,
  prefill_s: bestPrefill,
  prefill_tokens_per_s: args.promptTokens / bestPrefill,
  decode_tokens: args.decodeTokens,
  decode_tokens_per_s: args.decodeTokens / bestDecode,
  batch_decode_tokens_per_s: {},
};
for (const b of args.batch) {
  let best = 0;
  for (let r = 0; r < args.repeat; ++r) {
    const context = await model.createContext({contextSize: ctxTokens * b, sequences: b,
                                               batchSize: Math.min(args.promptTokens, 512),
                                               threads: args.threads});
    best = Math.max(best, await runBatch(context, b, args.promptTokens, args.decodeTokens, 100 * r));
    await context.dispose();
  }
  out.batch_decode_tokens_per_s[String(b)] = best;
}
await model.dispose();
await llama.dispose();
console.log(JSON.stringify(out));
