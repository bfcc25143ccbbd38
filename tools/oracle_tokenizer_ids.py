#!/usr/bin/env python3
"""Writes the Hugging Face `tokenizers` encodings of the test corpus, per tokenizer.

Usage: python3 tools/oracle_tokenizer_ids.py --tokenizers .cache/tokenizers --out tests/fixtures/tokenizer/
Needs the `tokenizers` package (0.23) and no network. For each <name>/tokenizer.json under
--tokenizers writes <out>/<name>_ids.json: a list of {"text", "ids", "ids_with_special", "decoded"}.
"""
import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", default=".cache/tokenizers")
    parser.add_argument("--out", default="tests/fixtures/tokenizer/")
    parser.add_argument("--corpus", default=None, help="default: <out>/corpus.json")
    args = parser.parse_args()

    import tokenizers  # imported here so --help works without it

    corpus_path = args.corpus or os.path.join(args.out, "corpus.json")
    with open(corpus_path, encoding="utf-8") as f:
        corpus = json.load(f)
    names = sorted(n for n in os.listdir(args.tokenizers)
                   if os.path.isfile(os.path.join(args.tokenizers, n, "tokenizer.json")))
    if not names:
        print(f"no <name>/tokenizer.json under {args.tokenizers}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        tokenizer = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizers, name, "tokenizer.json"))
        entries = []
        for text in corpus:
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            entries.append({
                "text": text,
                "ids": ids,
                "ids_with_special": tokenizer.encode(text, add_special_tokens=True).ids,
                "decoded": tokenizer.decode(ids, skip_special_tokens=False),
            })
        out_path = os.path.join(args.out, f"{name}_ids.json")
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(entries, f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"{name}: {len(entries)} entries -> {out_path} (tokenizers {tokenizers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
