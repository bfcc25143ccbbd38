#!/usr/bin/env python3
"""The Hugging Face `tokenizers` side of bench/tokenizer_bench: the same corpus, repeated to ~8 MB,
encoded entry by entry on one thread. Run it on the same machine as tokenizer_bench.

usage: RAYON_NUM_THREADS=1 python3 tools/hf_tokenizer_bench.py [--tokenizers .cache/tokenizers]
       [--corpus tests/fixtures/tokenizer/corpus.json] [--out FILE]
"""
import argparse
import json
import os
import platform
import statistics
import time

from tokenizers import Tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizers", default=".cache/tokenizers")
    parser.add_argument("--corpus", default="tests/fixtures/tokenizer/corpus.json")
    parser.add_argument("--target-bytes", type=int, default=8 << 20)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    corpus = [t for t in json.load(open(args.corpus, encoding="utf-8")) if t]
    one_pass = sum(len(t.encode("utf-8")) for t in corpus)
    repeats = max(1, args.target_bytes // one_pass)
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    records = []
    for name in sorted(os.listdir(args.tokenizers)):
        tok = Tokenizer.from_file(os.path.join(args.tokenizers, name, "tokenizer.json"))
        for text in corpus:  # warm-up
            tok.encode(text, add_special_tokens=False)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                for text in corpus:
                    tok.encode(text, add_special_tokens=False)
            times.append(time.perf_counter() - start)
        mb_s = one_pass * repeats / statistics.median(times) / 1e6
        print(f"hf tokenizers {name:14s} {mb_s:8.2f} MB/s", flush=True)
        records.append({"metric": f"tokenizer_encode_hf_{name}", "value": mb_s, "unit": "MB/s",
                        "device": cpu, "command": "tools/hf_tokenizer_bench.py", "note": "tokenizers "
                        + __import__("tokenizers").__version__ + ", Tokenizer.encode per entry, one thread"})
    if args.out:
        json.dump({"records": records}, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
