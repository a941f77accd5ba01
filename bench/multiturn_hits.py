#!/usr/bin/python3
"""Fraction of each turn's prompt served from the prefix store, over a multi-turn chat.

Talks to a running `ckv serve` (Python standard library only). Each turn appends the model's
answer and a new user message, as a chat client does; the server stores every turn's context
in the background, so turn t+1 should find turn t's whole context stored. Prints a markdown
table: turn, prompt tokens, cached tokens, fraction, the stored prefix used.

  bench/multiturn_hits.py --url http://127.0.0.1:8080 --turns 6 --max-tokens 32
"""
import argparse
import json
import time
import urllib.error
import urllib.request

QUESTIONS = [
    "Once upon a time there was a little girl named Lily who loved to play in the park.",
    "What did Lily find under the big tree?",
    "Who came to help her?",
    "What happened when it started to rain?",
    "How did the day end?",
    "What did Lily learn?",
    "Tell me about her friend Tom.",
    "What game did they play?",
]


def call(url, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read().decode()


def wait_for_stores(url):
    for _ in range(2400):
        for line in call(url, "/metrics").splitlines():
            if line.startswith("ckv_store_pending ") and float(line.split()[1]) == 0:
                return
        time.sleep(0.025)
    raise SystemExit("the store writer did not finish")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    args = ap.parse_args()
    messages = []
    print("| turn | prompt tokens | cached tokens | cached fraction | answer tokens | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for t in range(args.turns):
        messages.append({"role": "user", "content": QUESTIONS[t % len(QUESTIONS)]})
        try:
            r = json.loads(call(args.url, "/v1/chat/completions",
                                {"messages": messages, "max_tokens": args.max_tokens,
                                 "temperature": args.temperature, "seed": t}))
        except urllib.error.HTTPError as e:
            print(f"| {t + 1} | stopped: HTTP {e.code}: {json.loads(e.read())['error']['message']} |||||")
            break
        u = r["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        print(f"| {t + 1} | {u['prompt_tokens']} | {cached} | {cached / u['prompt_tokens']:.3f} | "
              f"{u['completion_tokens']} | {u['ckv']['note'] or ''} |", flush=True)
        messages.append({"role": "assistant", "content": r["choices"][0]["message"]["content"]})
        wait_for_stores(args.url)


if __name__ == "__main__":
    main()
