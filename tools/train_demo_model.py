#!/usr/bin/env python3
"""Trains troupe-demo: a tiny DeepSeek-V3-architecture model (MLA, MoE with 8 routed experts in 4
groups plus a shared expert, the first layer dense, YaRN) that really answers the synthetic tasks
of tools/demo_tasks.py in DeepSeek-R1's style (reasoning inside <think>...</think>, then the answer).
Runs on the GPU machine (PyTorch, transformers, tokenizers; fixed seeds; no data from outside).

Steps: generate conversations (seed 1) -> train a byte-level BPE tokenizer on them (digits one per
token, DeepSeek-V3's pre-tokenizer otherwise, the R1 special tokens) -> render each conversation
with the R1 chat template (checked against transformers' renderer) -> train with AdamW under bf16
autocast, loss on the completion only; the router bias learns DeepSeek's auxiliary-loss-free way
(raised for experts below the mean load, lowered above) -> save a Hugging Face folder in bf16 and a
copy with FP8 128x128 block weights (R1's spelling) -> judge both greedily with transformers on the
problems of demo_tasks.problems(seed 2, 200) (another seed than training).

Writes OUT/troupe-demo/ and OUT/troupe-demo-fp8/ (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json with the chat template, generation_config.json), OUT/problems.json (the 200
problems with their answers and transformers' greedy completions) and OUT/train_log.json.

usage: python3 tools/train_demo_model.py --out OUT [--export DIR] [--steps 4500] [--smoke]
(troupe-demo: --steps 4500, 384 s of training on one H200)
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import tarfile
import time

import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_tasks  # noqa: E402
from make_deepseek_fixtures import quantize_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
R1_TEMPLATE_SOURCE = os.path.join(HERE, "..", "tests", "fixtures", "models", "deepseek-r1-tiny", "tokenizer_config.json")
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
TOOL_TOKENS = ["<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
               "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
               "<｜tool▁sep｜>"]
SPECIALS = [BOS, EOS, USER, ASSISTANT] + TOOL_TOKENS
VOCAB = 3000
MAX_LEN = 512
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 512,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
MODEL = dict(hidden_size=256, intermediate_size=768, moe_intermediate_size=128, num_hidden_layers=4,
             num_attention_heads=8, num_key_value_heads=8, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
             qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
             n_group=4, topk_group=2, topk_method="noaux_tc", routed_scaling_factor=2.5, norm_topk_prob=True,
             first_k_dense_replace=1, moe_layer_freq=1, max_position_embeddings=2048, rms_norm_eps=1e-6,
             tie_word_embeddings=False, rope_parameters=YARN, initializer_range=0.02)


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    # DeepSeek-V3's pre-tokenizer, with digits one per token (the arithmetic reads them singly).
    word_split = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                  " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\\p{N}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(word_split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # As in DeepSeek-R1's tokenizer: the reasoning delimiters are single, non-special tokens.
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    assert tok.token_to_id(BOS) == 0 and tok.token_to_id(EOS) == 1
    return tok


def render(messages, system_joiner="\n\n"):
    """The R1 template's rendering of these messages with the generation prompt (plain roles only)."""
    systems = [m["content"] for m in messages if m["role"] == "system"]
    out = BOS + system_joiner.join(systems)
    for m in messages:
        if m["role"] == "user":
            out += USER + m["content"]
        elif m["role"] == "assistant":
            content = m["content"].split("</think>")[-1] if "</think>" in m["content"] else m["content"]
            out += ASSISTANT + content + EOS
    return out + ASSISTANT + "<think>\n"


def encode_samples(tok, samples):
    prompts = tok.encode_batch([render(s["messages"]) for s in samples], add_special_tokens=False)
    completions = tok.encode_batch([demo_tasks.completion(s) for s in samples], add_special_tokens=False)
    eos = tok.token_to_id(EOS)
    out = []
    for p, c in zip(prompts, completions):
        ids = p.ids + c.ids + [eos]
        if len(ids) <= MAX_LEN:
            out.append((ids, len(p.ids)))
    return out


def batches(encoded, batch_size, rng):
    """Endless batches; each pool of 64 batches is sorted by length first, so little is padding."""
    order = list(range(len(encoded)))
    pool = 64 * batch_size
    while True:
        rng.shuffle(order)
        for pool_start in range(0, len(order) - pool + 1, pool):
            chosen_pool = sorted(order[pool_start:pool_start + pool], key=lambda i: len(encoded[i][0]))
            groups = [chosen_pool[b:b + batch_size] for b in range(0, pool, batch_size)]
            rng.shuffle(groups)
            for group in groups:
                chosen = [encoded[i] for i in group]
                width = max(len(ids) for ids, _ in chosen)
                inputs = torch.full((batch_size, width), 1, dtype=torch.long)
                labels = torch.full((batch_size, width), -100, dtype=torch.long)
                for row, (ids, prompt_len) in enumerate(chosen):
                    inputs[row, :len(ids)] = torch.tensor(ids)
                    labels[row, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])
                yield inputs, labels


class RouterBalance:
    """DeepSeek-V3's auxiliary-loss-free balancing: after each step every MoE layer's
    e_score_correction_bias moves by `rate` toward equal expert loads (up when under-loaded)."""

    def __init__(self, model, rate):
        self.rate, self.loads, self.gates = rate, {}, []
        for name, module in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(module, "e_score_correction_bias"):
                self.gates.append((name, module))
                module.register_forward_hook(self._hook(name))
        self.k = model.config.num_experts_per_tok

    def _hook(self, name):
        def hook(module, inputs, output):
            logits = output[0] if isinstance(output, tuple) else output
            if logits.shape[-1] != module.e_score_correction_bias.shape[0]:
                return
            with torch.no_grad():
                choice = logits.detach().float().sigmoid().reshape(-1, logits.shape[-1]) + module.e_score_correction_bias
                top = choice.topk(self.k, dim=-1).indices.reshape(-1)
                self.loads[name] = torch.bincount(top, minlength=logits.shape[-1]).float()
        return hook

    def step(self):
        with torch.no_grad():
            for name, gate in self.gates:
                load = self.loads.pop(name, None)
                if load is not None:
                    gate.e_score_correction_bias += self.rate * torch.sign(load.mean() - load).to(
                        gate.e_score_correction_bias.dtype)

    def imbalance(self):
        return {name: [round(float(x), 3) for x in gate.e_score_correction_bias] for name, gate in self.gates}


def greedy_answers(model, tok, problems, device, max_new_tokens=MAX_LEN):
    """Batched greedy decoding with transformers (left padding), the completions as text."""
    eos = tok.token_to_id(EOS)
    prompts = [tok.encode(render(p["messages"]), add_special_tokens=False).ids for p in problems]
    results = []
    for start in range(0, len(prompts), 200):
        chunk = prompts[start:start + 200]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), eos, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, p in enumerate(chunk):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=eos, eos_token_id=eos)
        for row in range(len(chunk)):
            gen = out[row, width:].tolist()
            if eos in gen:
                gen = gen[:gen.index(eos)]
            results.append({"ids": gen, "text": tok.decode(gen, skip_special_tokens=True)})
    return results


def split_answer(text):
    """(reasoning, answer) of an R1 completion written after `<think>\\n`."""
    if "</think>" not in text:
        return text, ""
    reasoning, answer = text.split("</think>", 1)
    return reasoning.strip(), answer.strip()


def judge(model, tok, problems, device):
    answers = greedy_answers(model, tok, problems, device)
    correct = {}
    for p, a in zip(problems, answers):
        ok = split_answer(a["text"])[1] == p["answer"]
        correct.setdefault(p["task"], []).append(ok)
    total = sum(sum(v) for v in correct.values()) / len(problems)
    return total, {k: sum(v) / len(v) for k, v in correct.items()}, answers


def save_folder(model, tok, path, template):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS,
                   "pad_token": EOS, "chat_template": template, "clean_up_tokenization_spaces": False,
                   "model_max_length": MODEL["max_position_embeddings"], "tokenizer_class": "PreTrainedTokenizerFast"},
                  f, indent=2, ensure_ascii=False)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95},
                  f, indent=2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-samples", type=int, default=400000)
    parser.add_argument("--export", help="also write the two folders as tar files and the results here")
    parser.add_argument("--smoke", action="store_true", help="a few steps and 20 problems: checks the script")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.train_samples = 30, 20000
    started = time.time()
    torch.manual_seed(1)
    random.seed(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)

    rng = random.Random(1)
    samples = [demo_tasks.sample(rng) for _ in range(args.train_samples)]
    texts = [render(s["messages"]) + demo_tasks.completion(s) + EOS for s in samples[:50000]]
    tok = train_tokenizer(texts)
    with open(R1_TEMPLATE_SOURCE) as f:
        template = json.load(f)["chat_template"]
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)
    fast.chat_template = template
    for s in samples[:300]:  # our renderer must be the template's
        expected = fast.apply_chat_template(s["messages"], tokenize=False, add_generation_prompt=True)
        assert render(s["messages"]) == expected, (render(s["messages"]), expected)
    encoded = encode_samples(tok, samples)
    print(f"tokenizer {tok.get_vocab_size()} ids; {len(encoded)} samples; "
          f"mean length {sum(len(e[0]) for e in encoded) / len(encoded):.0f}; {time.time() - started:.0f} s", flush=True)

    vocab = (tok.get_vocab_size() + 63) // 64 * 64
    config = transformers.DeepseekV3Config(vocab_size=vocab, bos_token_id=0, eos_token_id=1, pad_token_id=1, **MODEL)
    model = transformers.DeepseekV3ForCausalLM(config).to(device).float()
    params = sum(p.numel() for p in model.parameters())
    print(f"model {params / 1e6:.2f} M parameters", flush=True)
    experts = "eager"
    if device == "cuda" and hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("grouped_mm")
            experts = "grouped_mm"
        except Exception as error:  # older transformers: the loop over experts
            print("grouped_mm experts unavailable:", error, flush=True)
    balance = RouterBalance(model, rate=1e-3)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=device == "cuda")
    def lr_at(step):
        warmup = min(200, args.steps // 10)
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    log = []
    data = batches(encoded, args.batch, random.Random(3))
    model.train()
    train_start = time.time()
    for step in range(args.steps):
        inputs, labels = next(data)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        try:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(input_ids=inputs.to(device), labels=labels.to(device)).loss
        except Exception as error:
            if step != 0 or experts == "eager":
                raise
            print("grouped_mm experts failed, back to eager:", repr(error)[:300], flush=True)
            experts = "eager"
            model.set_experts_implementation("eager")
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(input_ids=inputs.to(device), labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        balance.step()
        if step % 100 == 0 or step == args.steps - 1:
            entry = {"step": step, "loss": round(float(loss.detach()), 4), "lr": lr_at(step),
                     "seconds": round(time.time() - train_start, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    train_seconds = time.time() - train_start
    model.eval()

    problems = demo_tasks.problems(seed=2, count=20 if args.smoke else 200)
    seen = {json.dumps(s["messages"]) for s in samples}
    for p in problems:
        p["seen_in_training"] = json.dumps(p["messages"]) in seen
    torch.backends.cuda.matmul.allow_tf32 = False
    bf16_dir = os.path.join(args.out, "troupe-demo")
    fp8_dir = os.path.join(args.out, "troupe-demo-fp8")
    save_folder(model, tok, bf16_dir, template)
    results = {"experts_implementation": experts, "train_seconds": round(train_seconds, 1), "steps": args.steps, "lr": args.lr,
               "train_samples": len(encoded), "problems_seen_in_training": sum(p["seen_in_training"] for p in problems), "batch": args.batch,
               "parameters": params, "vocab": tok.get_vocab_size(), "log": log,
               "router_bias": balance.imbalance(), "torch": torch.__version__, "transformers": transformers.__version__}
    # The FP8 copy: 128x128 blocks with scale_inv, R1's config spelling; judged on its dequantized twin.
    shutil.rmtree(fp8_dir, ignore_errors=True)
    shutil.copytree(bf16_dir, fp8_dir)
    twin = fp8_dir + ".dequantized"
    shutil.rmtree(twin, ignore_errors=True)
    quantize_folder(fp8_dir, twin, config.num_hidden_layers, torch.Generator().manual_seed(5))

    def export():
        results["seconds"] = round(time.time() - started, 1)
        for directory in filter(None, [args.out, args.export]):
            with open(os.path.join(directory, "problems.json"), "w") as f:
                json.dump({"seed": 2, "problems": problems}, f, indent=1, ensure_ascii=False)
            with open(os.path.join(directory, "train_log.json"), "w") as f:
                json.dump(results, f, indent=1)

    if args.export:  # the folders first, so a run cut short still returns the model
        os.makedirs(args.export, exist_ok=True)
        for name in ("troupe-demo", "troupe-demo-fp8"):
            with tarfile.open(os.path.join(args.export, name + ".tar"), "w") as tar:
                tar.add(os.path.join(args.out, name), arcname=name)
    export()

    judged = [("bf16", bf16_dir, torch.bfloat16), ("fp32", bf16_dir, torch.float32), ("fp8", twin, torch.float32)]
    for label, directory, dtype in judged:
        judged_model = transformers.DeepseekV3ForCausalLM.from_pretrained(directory, dtype=dtype).to(device).eval()
        acc, per_task, answers = judge(judged_model, tok, problems, device)
        results[f"accuracy_{label}"], results[f"accuracy_{label}_per_task"] = acc, per_task
        for p, a in zip(problems, answers):
            p[f"transformers_{label}"] = a["text"]
        print(f"{label} accuracy", acc, per_task, flush=True)
        export()
    shutil.rmtree(twin)
    print(json.dumps({k: v for k, v in results.items() if k != "log"}), flush=True)

if __name__ == "__main__":
    main()
