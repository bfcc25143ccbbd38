#!/usr/bin/env python3
"""Oracle fixtures for DeepSeek-V3 (MLA + MoE + YaRN, bf16, fp32 with q_lora_rank null, and the FP8
128x128 block layout) and Qwen3 (q/k RMSNorm per head, explicit head_dim), built on the GPU machine
with transformers as tools/make_fixtures.py builds the Llama ones (same tokenizer, same files:
config.json, *.safetensors, tokenizer files, oracle.json, oracle_logits.safetensors).

The FP8 fixture: the random fp32 model's 2-D projection weights (not embeddings, lm_head, norms or
the router) are quantized per 128x128 block to F8_E4M3 with an F32 `<name>_scale_inv`
[ceil(out/128), ceil(in/128)] (scale = amax / 448), and config.json gets the real R1 spelling
(`quantization_config`, `rope_scaling {type: yarn}`). The oracle runs on the dequantized weights
(fp8 * scale_inv) in fp32. Its checkpoint also carries an MTP layer at index num_hidden_layers
(`model.layers.<L>.*`, as R1 stores layer 61), which a loader must skip.

The router bias e_score_correction_bias is random and positive: transformers masks dropped groups
with 0 where DeepSeek's reference uses -inf, which differ only when a biased score is negative.

usage: python3 tools/make_deepseek_fixtures.py --out tests/fixtures/models
"""
import argparse
import glob
import json
import math
import os
import shutil
import sys
import traceback

import torch
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import VOCAB, CHAT_TEMPLATE, PROMPT_LENGTHS, randomize, record_oracle, train_tokenizer  # noqa: E402

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707}
DEEPSEEK = dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=4, q_lora_rank=48, kv_lora_rank=32,
                qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1,
                num_experts_per_tok=2, n_group=2, topk_group=1, topk_method="noaux_tc", routed_scaling_factor=2.5,
                norm_topk_prob=True, first_k_dense_replace=1, moe_layer_freq=1, max_position_embeddings=256,
                rms_norm_eps=1e-6, tie_word_embeddings=False, rope_parameters=YARN)
MODELS = {
    "deepseek-v3-tiny": dict(arch="deepseek_v3", dtype=torch.bfloat16, fp8=False, config=DEEPSEEK),
    "deepseek-v3-lite-tiny": dict(arch="deepseek_v3", dtype=torch.float32, fp8=False,
                                  config=dict(DEEPSEEK, q_lora_rank=None, num_hidden_layers=2)),
    # Sizes past one 128-wide block so edge blocks are partial: hidden 160, q_b 4 x 48, kv_b 4 x 64.
    "deepseek-v3-fp8-tiny": dict(arch="deepseek_v3", dtype=torch.float32, fp8=True,
                                 config=dict(DEEPSEEK, hidden_size=160, intermediate_size=272,
                                             moe_intermediate_size=144, q_lora_rank=144, kv_lora_rank=136,
                                             qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                                             num_hidden_layers=2)),
    # DeepSeek-V3/R1's real per-head dims (qk 128 + 64, v 128, latent 512) and a 300-token prompt, so
    # decode splits the context into partitions: the kernels that serve R1 against transformers.
    "deepseek-v3-r1dims-tiny": dict(arch="deepseek_v3", dtype=torch.bfloat16, fp8=False,
                                    prompt_lengths=[1, 19, 300],
                                    config=dict(DEEPSEEK, hidden_size=256, intermediate_size=256,
                                                moe_intermediate_size=64, q_lora_rank=256, kv_lora_rank=512,
                                                qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                                                num_hidden_layers=2, max_position_embeddings=512)),
    "qwen3-tiny": dict(arch="qwen3", dtype=torch.bfloat16, fp8=False, config=dict(
        hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True)),
}
FP8_MAX = 448.0
NOT_QUANTIZED = ("embed_tokens", "lm_head", "norm", "mlp.gate.weight")


def classes(arch):
    if arch == "qwen3":
        return transformers.Qwen3Config, transformers.Qwen3ForCausalLM
    return transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM


def quantize_block(w):
    """w fp32 [out, in] -> (fp8 e4m3 [out, in], fp32 scale_inv [ceil(out/128), ceil(in/128)])."""
    out, inn = w.shape
    rb, cb = math.ceil(out / 128), math.ceil(inn / 128)
    q = torch.empty(out, inn, dtype=torch.float8_e4m3fn)
    scale = torch.empty(rb, cb, dtype=torch.float32)
    for i in range(rb):
        for j in range(cb):
            block = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s = max(block.abs().max().item(), 1e-12) / FP8_MAX
            scale[i, j] = s
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = (block / s).to(torch.float8_e4m3fn)
    return q, scale


def dequantize_block(q, scale):
    w = q.to(torch.float32)
    out, inn = w.shape
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] *= scale[i, j]
    return w


def quantize_folder(path, oracle_path, num_layers, generator):
    """Rewrites path's safetensors as FP8 blocks; writes the dequantized fp32 twin to oracle_path."""
    shutil.copytree(path, oracle_path)
    for file in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        tensors = load_file(file)
        quantized, dequantized = {}, {}
        for name, t in tensors.items():
            if t.dim() == 2 and not any(k in name for k in NOT_QUANTIZED):
                q, s = quantize_block(t.float())
                quantized[name], quantized[name + "_scale_inv"] = q, s
                dequantized[name] = dequantize_block(q, s)
            else:
                quantized[name] = t
                dequantized[name] = t
        save_file(quantized, file, metadata={"format": "pt"})
        save_file(dequantized, os.path.join(oracle_path, os.path.basename(file)), metadata={"format": "pt"})
    # An MTP layer after the last decoder layer, as R1 stores model.layers.61 (never read).
    mtp = {f"model.layers.{num_layers}.{n}": torch.randn(s, generator=generator).to(torch.bfloat16)
           for n, s in [("enorm.weight", (4,)), ("hnorm.weight", (4,)), ("eh_proj.weight", (4, 8)),
                        ("shared_head.norm.weight", (4,))]}
    save_file(mtp, os.path.join(path, "model-mtp.safetensors"), metadata={"format": "pt"})
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            data = json.load(f)
    else:
        data = {"metadata": {}, "weight_map": {}}
        for name in load_file(os.path.join(path, "model.safetensors")):
            data["weight_map"][name] = "model.safetensors"
    for name in mtp:
        data["weight_map"][name] = "model-mtp.safetensors"
    for file in sorted(glob.glob(os.path.join(path, "model*.safetensors"))):
        for name in load_file(file):
            data["weight_map"][name] = os.path.basename(file)
    with open(index, "w") as f:
        json.dump(data, f, indent=2)
    # config.json in the real R1 spelling.
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    rope = dict(cfg.pop("rope_parameters", None) or YARN)
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    rope["type"] = rope.pop("rope_type", "yarn")
    cfg["rope_scaling"] = rope
    cfg["num_nextn_predict_layers"] = 1
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [128, 128]}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)


def build(name, spec, tok, out_dir, device):
    generator = torch.Generator().manual_seed(4321 + len(name))
    cls_config, cls_model = classes(spec["arch"])
    eot, eos, bos = tok.token_to_id("<|eot_id|>"), tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|begin_of_text|>")
    config = cls_config(vocab_size=VOCAB, bos_token_id=bos, eos_token_id=[eos, eot], **spec["config"])
    model = cls_model(config).to(torch.float32)
    randomize(model, generator)
    with torch.no_grad():
        for mod_name, buf in model.named_buffers():
            if mod_name.endswith("e_score_correction_bias"):
                buf.copy_(0.05 + 0.1 * torch.rand(buf.shape, generator=generator))
    model = model.to(spec["dtype"])
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    model.save_pretrained(path)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": CHAT_TEMPLATE,
                   "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.max_position_embeddings},
                  f, indent=2)
    oracle_dir = path
    if spec["fp8"]:
        oracle_dir = path + ".oracle-tmp"
        shutil.rmtree(oracle_dir, ignore_errors=True)
        quantize_folder(path, oracle_dir, config.num_hidden_layers, generator)

    model = cls_model.from_pretrained(oracle_dir, dtype=torch.float32).to(device).eval()
    record_oracle(model, path, generator, device, spec.get("prompt_lengths", PROMPT_LENGTHS))
    if oracle_dir != path:
        shutil.rmtree(oracle_dir)
    print(name, "->", path, sorted(os.listdir(path)), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/fixtures/models")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = train_tokenizer()
    failed = []
    for name, spec in MODELS.items():
        if args.only and name not in args.only:
            continue
        try:
            build(name, spec, tok, args.out, device)
        except Exception:  # one model's failure must not cost the others
            traceback.print_exc()
            failed.append(name)
    if failed:
        print("FAILED:", failed, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
