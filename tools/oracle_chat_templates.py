#!/usr/bin/env python3
"""Reference renderings of chat templates by transformers' apply_chat_template.

Run on a machine with transformers (5.x) and tokenizers installed, no network needed:

  python3 tools/oracle_chat_templates.py --tokenizers .cache/tokenizers \
      --conversations tests/fixtures/chat/conversations.json --out tests/fixtures/chat/

For every folder <name> under --tokenizers holding tokenizer.json and a tokenizer_config.json
with a `chat_template`, writes <out>/<name>_rendered.json: a list, for each conversation and
add_generation_prompt in (true, false), of
  {"conversation": i, "add_generation_prompt": b, "prompt": str}   or
  {"conversation": i, "add_generation_prompt": b, "error": message} when the template raises.
tests/unit/chat_template_test.cpp compares troupe's renderer with these byte for byte.
"""
import argparse
import json
import os
import sys


def special_token(config, field):
    value = config.get(field)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def default_template(config):
    template = config.get("chat_template")
    if isinstance(template, list):
        for entry in template:
            if isinstance(entry, dict) and entry.get("name") == "default":
                return entry["template"]
        return None
    return template


def render_all(folder, conversations):
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    template = default_template(config)
    if not isinstance(template, str):
        return None
    kwargs = {}
    for field in ("bos_token", "eos_token"):
        token = special_token(config, field)
        if token is not None:
            kwargs[field] = token
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), **kwargs)

    def render(messages, tools, add_generation_prompt):
        prompt = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False,
            return_dict=False, chat_template=template)
        if not isinstance(prompt, str):
            raise TypeError("apply_chat_template returned %s, not str" % type(prompt).__name__)
        return prompt

    # Outside the per-conversation try: a broken setup (API change, bad kwarg) must stop the
    # oracle instead of being recorded as "the template raised" for every conversation.
    render([{"role": "user", "content": "hi"}], None, True)
    results = []
    for index, conversation in enumerate(conversations):
        for add_generation_prompt in (True, False):
            entry = {"conversation": index, "add_generation_prompt": add_generation_prompt}
            try:
                entry["prompt"] = render(conversation["messages"], conversation.get("tools"), add_generation_prompt)
            except Exception as error:  # the template raised: the renderer must fail too
                entry["error"] = "%s: %s" % (type(error).__name__, error)
            results.append(entry)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizers", required=True, help="folder of <name>/tokenizer{,_config}.json")
    parser.add_argument("--conversations", required=True, help="conversations.json")
    parser.add_argument("--out", required=True, help="folder for <name>_rendered.json")
    args = parser.parse_args()

    with open(args.conversations, encoding="utf-8") as f:
        conversations = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    names = sorted(d for d in os.listdir(args.tokenizers)
                   if os.path.isfile(os.path.join(args.tokenizers, d, "tokenizer_config.json")))
    if not names:
        sys.exit("no tokenizer folders under %s (run tools/fetch-tokenizers)" % args.tokenizers)
    for name in names:
        results = render_all(os.path.join(args.tokenizers, name), conversations)
        if results is None:
            print("%s: no chat_template, skipped" % name)
            continue
        path = os.path.join(args.out, "%s_rendered.json" % name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=1)
            f.write("\n")
        num_errors = sum("error" in r for r in results)
        print("%s: %d renderings (%d raised) -> %s" % (name, len(results), num_errors, path))


if __name__ == "__main__":
    main()
