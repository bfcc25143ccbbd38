#!/usr/bin/env python3
"""Production-shape oracle fixtures for the dense GPU kernels (issue #21 item 6), built on the GPU
machine (torch + transformers, no network).

Today's dense fixtures have head_dim 16 to 32 and prompts of at most 40 tokens, so they never reach
the kernels that serve Llama-3 and Qwen3: head_dim 128 (and 64, 256), GQA 4:1, contexts past 1,024
where decode splits the context and prefill runs on tensor cores. These fixtures have those shapes
with a small hidden size and vocabulary.

Their weights are not committed: they are troupe's `--load-format dummy` weights
(models/dummy_weights.cpp: value = offset + scale * unit(hash(seed, name), index), offset 1 for
norms), recomputed here bit for bit by the same formula, so a fixture is a config.json, an
oracle.json and its logits (about 0.5 MB) instead of megabytes of weights.

  tests/fixtures/production/<name>/{config.json, oracle.json, oracle_logits.safetensors}

oracle.json = {"prompts": [[ids]] (1, 300 and 1,100 tokens), "greedy": [[32 ids]],
  "max_new_tokens": 32, "prompt_logits_from": [first position kept per prompt],
  "dummy": {"seed", "scale"}, "weights": [every parameter name, sorted], "transformers", "torch"}
oracle_logits.safetensors: "prompt.<i>" = fp32 logits of prompt positions [from, len);
  "decode.<i>" = fp32 logits of decode steps 1..31 (after feeding greedy[0..30]: teacher forcing
  with transformers' own greedy tokens), computed with transformers' KV cache, fp32 weights and math.

usage: python3 tools/make_production_fixtures.py --out tests/fixtures/production
"""
import argparse
import json
import os
import random

import torch
import transformers
from safetensors.torch import save_file

VOCAB = 512
SEED = 7
SCALE = 0.2
PROMPT_LENGTHS = [1, 300, 1100]
MAX_NEW_TOKENS = 32
KEEP_PROMPT_POSITIONS = 64

COMMON = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, max_position_embeddings=4096,
              bos_token_id=0, eos_token_id=1)
MODELS = {
    # Llama-3-8B's attention shape: head_dim 128, 4 query heads per KV head.
    "llama-hd128-gqa4": ("llama", dict(COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=128, rms_norm_eps=1e-5, rope_theta=500000.0,
                                       tie_word_embeddings=False)),
    # Qwen3's: head_dim 128, q/k norms, tied embeddings.
    "qwen3-hd128-gqa4": ("qwen3", dict(COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                                       tie_word_embeddings=True)),
    "llama-hd64-gqa4": ("llama", dict(COMMON, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                                      head_dim=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                                      tie_word_embeddings=False)),
    "llama-hd256-gqa4": ("llama", dict(COMMON, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=256, rms_norm_eps=1e-6, rope_theta=10000.0,
                                       tie_word_embeddings=False)),
}

MASK = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def name_hash(name, seed):
    h = 0xCBF29CE484222325 ^ mix64(seed)
    for c in name.encode():
        h = ((h ^ c) * 0x100000001B3) & MASK
    return mix64(h)


def dummy_tensor(name, shape, seed, scale):
    """models/dummy_weights.cpp's values for `name`, as float32."""
    n = 1
    for d in shape:
        n *= d
    h = name_hash(name, seed)
    try:
        import numpy as np
        i = np.arange(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            def mix(x):
                x = x + np.uint64(0x9E3779B97F4A7C15)
                x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                return x ^ (x >> np.uint64(31))
            bits = mix(np.uint64(h) ^ mix(i))
        unit = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1.0)
        values = torch.from_numpy(unit.astype(np.float32))
    except ImportError:
        values = torch.tensor([float(mix64(h ^ mix64(i)) >> 40) * (2.0 / 16777216.0) - 1.0 for i in range(n)],
                              dtype=torch.float32)
    offset = 1.0 if name.endswith("norm.weight") else 0.0
    return (torch.tensor(offset, dtype=torch.float32) + torch.tensor(scale, dtype=torch.float32) * values).reshape(shape)


def build(name, arch, config_args, out_dir, device):
    cls_config = transformers.LlamaConfig if arch == "llama" else transformers.Qwen3Config
    cls_model = transformers.LlamaForCausalLM if arch == "llama" else transformers.Qwen3ForCausalLM
    config = cls_config(**config_args)
    try:  # the eager attention: plain fp32 math
        model = cls_model._from_config(config, attn_implementation="eager", dtype=torch.float32)
    except TypeError:
        model = cls_model._from_config(config, attn_implementation="eager").to(torch.float32)
    names = []
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(dummy_tensor(pname, tuple(p.shape), SEED, SCALE))
            names.append(pname)
    model = model.to(device).eval()
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    config.save_pretrained(path)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(path, extra)):
            os.remove(os.path.join(path, extra))

    rng = random.Random(1000 + len(name))
    prompts = [[rng.randrange(2, VOCAB) for _ in range(n)] for n in PROMPT_LENGTHS]
    tensors, greedy, firsts = {}, [], []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            out = model(torch.tensor([prompt], device=device), use_cache=True)
            first = max(0, len(prompt) - KEEP_PROMPT_POSITIONS)
            firsts.append(first)
            tensors[f"prompt.{i}"] = out.logits[0, first:].float().cpu().contiguous()
            past = out.past_key_values
            token = int(torch.argmax(out.logits[0, -1]))
            seq, decode = [token], []
            for _ in range(MAX_NEW_TOKENS - 1):
                step = model(torch.tensor([[token]], device=device), past_key_values=past, use_cache=True)
                past = step.past_key_values
                decode.append(step.logits[0, -1].float().cpu())
                token = int(torch.argmax(step.logits[0, -1]))
                seq.append(token)
            tensors[f"decode.{i}"] = torch.stack(decode).contiguous()
            greedy.append(seq)
    save_file(tensors, os.path.join(path, "oracle_logits.safetensors"))
    with open(os.path.join(path, "oracle.json"), "w") as f:
        json.dump({"prompts": prompts, "greedy": greedy, "max_new_tokens": MAX_NEW_TOKENS,
                   "prompt_logits_from": firsts, "dummy": {"seed": SEED, "scale": SCALE},
                   "weights": sorted(names), "transformers": transformers.__version__,
                   "torch": torch.__version__}, f)
    print(name, "->", path, sorted(os.listdir(path)), "weights:", len(names))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/fixtures/production")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, (arch, config_args) in MODELS.items():
        build(name, arch, config_args, args.out, device)


if __name__ == "__main__":
    main()
