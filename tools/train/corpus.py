"""Collects the training corpus: long documents with free licenses that a Debian 12 machine has.

- Python standard library sources (/usr/lib/python3.11, PSF license), never site-/dist-packages:
  names defined far above are used far below, which is what a long-context model must learn.
- The King James Bible from Debian's bible-kjv (public domain), one document per book.
- The texts shipped in data/ (Pride and Prejudice, TinyStories; see data/README.md).

Every document is assigned to train or held-out by a hash of its name, so the split does not
depend on the machine's file order. Output: OUT/train/*.txt, OUT/heldout/*.txt, OUT/manifest.json.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

STDLIB = "/usr/lib/python3.11"
HELDOUT_PERCENT = 3  # of documents; the held-out set also gets the books listed below
HELDOUT_BOOKS = {"John", "Rom"}  # John, Romans: long held-out English documents


def heldout(name):
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


def stdlib_documents():
    for root, dirs, files in os.walk(STDLIB):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    yield "py/" + os.path.relpath(path, STDLIB), fh.read()


def kjv_documents():
    # `bible` prints "Ge1:1 In the beginning ..."; a book's verses become one document with the
    # chapter:verse numbers a printed Bible has.
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    books = {}
    order = []
    for line in out.splitlines():
        m = re.match(r"^([1-3]?[A-Za-z]+)(\d+:\d+) (.*)$", line)
        if not m:
            continue
        book, ref, text = m.groups()
        if book not in books:
            books[book] = []
            order.append(book)
        books[book].append(f"{ref} {text}")
    if len(order) != 66:
        sys.exit(f"corpus: expected 66 books from `bible`, got {len(order)}")
    for book in order:
        yield "kjv/" + book, "\n".join(books[book]) + "\n"


def data_documents(data_dir):
    for f in ("pride_and_prejudice.txt", "tinystories.txt"):
        with open(os.path.join(data_dir, f), encoding="utf-8") as fh:
            yield "data/" + f, fh.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "data"))
    args = ap.parse_args()
    manifest = {"train": [], "heldout": []}
    for split in manifest:
        os.makedirs(os.path.join(args.out, split), exist_ok=True)
    sources = [stdlib_documents(), kjv_documents(), data_documents(args.data_dir)]
    for source in sources:
        for name, text in source:
            if not text.strip():
                continue
            book = name.split("/")[-1]
            split = "heldout" if heldout(name) or (name.startswith("kjv/") and book in HELDOUT_BOOKS) \
                else "train"
            fname = name.replace("/", "__")
            with open(os.path.join(args.out, split, fname + ".txt"), "w", encoding="utf-8") as fh:
                fh.write(text)
            manifest[split].append({"name": name, "bytes": len(text.encode())})
    with open(os.path.join(args.out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    for split, docs in manifest.items():
        print(f"{split}: {len(docs)} documents, {sum(d['bytes'] for d in docs) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
