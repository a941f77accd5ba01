"""Trains a SentencePiece BPE tokenizer on the corpus and writes it as tokenizer.json.

The output has the shape of the Llama-2 / stories260K tokenizer.json our engine already reads
(BPE with byte fallback, a "Prepend ▁ + Replace ' '->'▁'" normalizer, no pre-tokenizer), made
the way Hugging Face's SpmConverter made it (transformers 4.3x): merges from the pieces' scores.
Newer releases order ties by piece lengths; every merge of one piece shares its score, so the
encodings are the same, which export.py --check and the held-out id comparison confirm. Settings for code:
no whitespace normalization (indentation is meaning), runs of spaces may be pieces, digits split,
bytes for anything the vocabulary lacks (newlines included: SentencePiece trains on lines).
"""

import argparse
import glob
import json
import os

import sentencepiece as spm


def train(corpus_dir, out_prefix, vocab_size):
    files = sorted(glob.glob(os.path.join(corpus_dir, "train", "*.txt")))
    spm.SentencePieceTrainer.train(
        input=files, model_prefix=out_prefix, model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_by_whitespace=True, max_sentence_length=16384,
        input_sentence_size=4000000, shuffle_input_sentence=True, num_threads=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=1)


def added(id_, content):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True}


def to_tokenizer_json(model_file):
    sp = spm.SentencePieceProcessor(model_file=model_file)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    # SpmConverter: every split of a piece into two pieces of the vocabulary is a merge, ranked
    # by the merged piece's score (BPE pieces' scores are minus their merge order).
    merges = []
    for i, piece in enumerate(pieces):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i):
            continue
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges.extend((l, r, sp.get_score(i)) for l, r in local)
    merges.sort(key=lambda x: -x[2])  # stable: ties keep the per-piece order
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "vocab": vocab,
                  "merges": [f"{l} {r}" for l, r, _ in merges]},
    }


TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
    "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizerFast",
    "clean_up_tokenization_spaces": False,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True, help="model directory to write tokenizer files into")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--max-length", type=int, default=8192)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, "tokenizer")
    train(args.corpus, prefix, args.vocab_size)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(to_tokenizer_json(prefix + ".model"), fh, ensure_ascii=False, indent=1)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as fh:
        json.dump(dict(TOKENIZER_CONFIG, model_max_length=args.max_length), fh, indent=2)
    os.remove(prefix + ".vocab")  # the .model stays: the trainer encodes with it (checked equal)


if __name__ == "__main__":
    main()
