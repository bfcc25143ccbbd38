#!/usr/bin/env python3
"""Oracle fixtures for the model engine, built on the GPU machine (torch + transformers, no network).

Writes random-weight tiny models of each architecture with `save_pretrained` (one sharded), a small
byte-level BPE tokenizer trained here with the `tokenizers` library plus a chat template (so the
tiny models can be served end to end), and for fixed prompts transformers' fp32 logits at every
position and a 32-token greedy continuation:

  tests/fixtures/models/<name>/{config.json, generation_config.json, *.safetensors[, index],
      tokenizer.json, tokenizer_config.json, oracle.json, oracle_logits.safetensors}

oracle.json = {"prompts": [[ids]], "greedy": [[ids]], "max_new_tokens": 32, "transformers": ver}
oracle_logits.safetensors: "logits.<i>" = [len(prompts[i]), vocab] fp32.

usage: python3 tools/make_fixtures.py --out tests/fixtures/models
"""
import argparse
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB = 512
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Serving large language models across machines needs schedulers, caches and kernels.",
    "def forward(self, x):\n    return self.norm(x + self.attn(x))\n" * 3,
    "In 2026 the cluster had 16 GPUs, 2 nodes and 1 head; 3.14159 and 42 are numbers.",
    "Hello, world! How are you today? I am fine, thank you. What is the answer? Think step by step.",
    "<think>Let me reason about this.</think> The answer is yes.",
]

MODELS = {
    # Llama-3 style: GQA, llama3 rope scaling, untied embeddings, fp32 weights.
    "llama-tiny": dict(arch="llama", dtype=torch.float32, shard=None, config=dict(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        tie_word_embeddings=False)),
    # Qwen2 style (DeepSeek-R1-Distill-Qwen): q/k/v bias, tied embeddings, bf16 weights.
    "qwen2-tiny": dict(arch="qwen2", dtype=torch.bfloat16, shard=None, config=dict(
        hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=True)),
    # Llama-2 style: multi-head attention, no rope scaling, fp16 weights, sharded checkpoint.
    "llama2-sharded": dict(arch="llama", dtype=torch.float16, shard="100KB", config=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False)),
}
PROMPT_LENGTHS = [1, 7, 19, 40]
MAX_NEW_TOKENS = 32


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    return tok


def randomize(model, generator):
    # transformers initialises norms to 1 and biases to 0; random values exercise every path.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def record_oracle(model, path, generator, device, prompt_lengths=PROMPT_LENGTHS):
    """Saves the oracle of `model` (fp32, on `device`) beside its checkpoint in `path`: random
    prompts, their logits at every position (oracle_logits.safetensors) and 32 greedy tokens."""
    prompts = [torch.randint(0, VOCAB, (n,), generator=generator).tolist() for n in prompt_lengths]
    logits, greedy = {}, []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([prompt], device=device)
            logits[f"logits.{i}"] = model(ids).logits[0].float().cpu().contiguous()
            seq = list(prompt)
            for _ in range(MAX_NEW_TOKENS):
                out = model(torch.tensor([seq], device=device)).logits[0, -1]
                seq.append(int(torch.argmax(out)))
            greedy.append(seq[len(prompt):])
    save_file(logits, os.path.join(path, "oracle_logits.safetensors"))
    with open(os.path.join(path, "oracle.json"), "w") as f:
        json.dump({"prompts": prompts, "greedy": greedy, "max_new_tokens": MAX_NEW_TOKENS,
                   "transformers": transformers.__version__, "torch": torch.__version__}, f)


def build(name, spec, tok, out_dir, device):
    generator = torch.Generator().manual_seed(1234 + len(name))
    cls_config = transformers.LlamaConfig if spec["arch"] == "llama" else transformers.Qwen2Config
    cls_model = transformers.LlamaForCausalLM if spec["arch"] == "llama" else transformers.Qwen2ForCausalLM
    eot, eos, bos = tok.token_to_id("<|eot_id|>"), tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|begin_of_text|>")
    config = cls_config(vocab_size=VOCAB, bos_token_id=bos, eos_token_id=[eos, eot], **spec["config"])
    model = cls_model(config).to(torch.float32)
    randomize(model, generator)
    model = model.to(spec["dtype"])
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model.save_pretrained(path, **kwargs)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": CHAT_TEMPLATE,
                   "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.max_position_embeddings},
                  f, indent=2)

    # The oracle is transformers loading the saved checkpoint in fp32 (buffers such as RoPE's
    # inv_freq are then computed in fp32, as a user's fp32 load would).
    model = cls_model.from_pretrained(path, dtype=torch.float32).to(device).eval()
    record_oracle(model, path, generator, device)
    print(name, "->", path, sorted(os.listdir(path)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/fixtures/models")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = train_tokenizer()
    for name, spec in MODELS.items():
        build(name, spec, tok, args.out, device)


if __name__ == "__main__":
    main()
