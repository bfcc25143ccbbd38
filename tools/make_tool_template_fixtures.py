#!/usr/bin/env python3
"""Reference renderings of tool-call conversations by transformers' apply_chat_template.

Run on a machine with transformers (5.x) and tokenizers installed, no network needed:

  python3 tools/make_tool_template_fixtures.py            # from the repository root

Reads only the repository: .cache/tokenizers/{deepseek_v3,qwen3,llama3_1}/tokenizer{,_config}.json
and tests/fixtures/chat/llama3_1_json_tools.jinja (a Llama-3.1 template with JSON tool calls; the
cached Llama-3.1 tokenizer_config has no tool support). Writes tests/fixtures/chat/tool_rendering.json:

  {"templates": {NAME: {"tokenizer": folder, "template_file": path or null}},
   "conversations": [{"name", "messages", "tools"}],      # as an OpenAI client sends them
   "renderings": [{"template", "conversation", "add_generation_prompt",
                   "prompt" | "error",                    # messages as sent (content null kept)
                   "prompt_empty_content" | "error_empty_content"}]}   # null contents as ""

The tokenizer is built as PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(...))
with the chat template passed explicitly (AutoTokenizer mangles DeepSeek-V3's).
tests/unit/tool_template_test.cpp renders the same inputs through troupe's request path and
compares byte for byte, then parses the rendered assistant tool-call turns back with the matching
--tool-call-parser.
"""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_chat_templates import default_template, special_token  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = os.path.join(ROOT, ".cache", "tokenizers")
OUT = os.path.join(ROOT, "tests", "fixtures", "chat", "tool_rendering.json")

TEMPLATES = {
    "deepseek_v3": {"tokenizer": "deepseek_v3", "template_file": None},
    "qwen3": {"tokenizer": "qwen3", "template_file": None},
    "llama3_1": {"tokenizer": "llama3_1", "template_file": None},
    "llama3_1_json_tools": {"tokenizer": "llama3_1",
                            "template_file": "tests/fixtures/chat/llama3_1_json_tools.jinja"},
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS = [
    {"name": "tools_user", "tools": [WEATHER, ADD],
     "messages": [{"role": "user", "content": "What is the weather in Paris?"}]},
    {"name": "system_tools_user", "tools": [WEATHER],
     "messages": [{"role": "system", "content": "You are a concise assistant."},
                  {"role": "user", "content": "Weather in Oslo?"}]},
    {"name": "one_call_result_follow_up", "tools": [WEATHER],
     "messages": [{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [call("call_0", "get_weather", "{\"city\": \"Oslo\"}")]},
                  {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": -3, \"sky\": \"snow\"}"}]},
    {"name": "two_calls_results_answer_follow_up", "tools": [WEATHER, ADD],
     "messages": [{"role": "system", "content": "Use the tools."},
                  {"role": "user", "content": "Add 2 and 3, and tell me the weather in Zürich."},
                  {"role": "assistant", "content": None,
                   "tool_calls": [call("call_0", "add", "{\"a\": 2, \"b\": 3}"),
                                  call("call_1", "get_weather", "{\"city\": \"Zürich\", \"unit\": \"celsius\"}")]},
                  {"role": "tool", "tool_call_id": "call_0", "content": "5"},
                  {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
                  {"role": "assistant", "content": "2 + 3 = 5, and it is 21 °C in Zürich."},
                  {"role": "user", "content": "And in Kraków?"}]},
    {"name": "call_turn_last", "tools": [WEATHER],
     "messages": [{"role": "user", "content": "Weather in Kyoto, in fahrenheit?"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [call("call_7", "get_weather",
                                       "{\"city\": \"京都\", \"unit\": \"fahrenheit\"}")]}]},
    {"name": "empty_content_call", "tools": [ADD],
     "messages": [{"role": "user", "content": "1+1 via the tool"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [call("call_0", "add", "{\"a\": 1, \"b\": 1}")]},
                  {"role": "tool", "tool_call_id": "call_0", "content": "2"}]},
]


# NOTE: keys sorted. troupe holds request JSON in nlohmann::json, whose objects sort their keys,
# so a template's `tools | tojson` writes them sorted where transformers keeps the client's order
# (a known gap, docs/tool-calls.md); sorted inputs make both sides comparable everywhere else.
CONVERSATIONS = json.loads(json.dumps(CONVERSATIONS, sort_keys=True))


def load(name):
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    spec = TEMPLATES[name]
    folder = os.path.join(TOKENIZERS, spec["tokenizer"])
    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if spec["template_file"]:
        with open(os.path.join(ROOT, spec["template_file"]), encoding="utf-8") as f:
            template = f.read()
    else:
        template = default_template(config)
    kwargs = {}
    for field in ("bos_token", "eos_token"):
        token = special_token(config, field)
        if token is not None:
            kwargs[field] = token
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), **kwargs)
    return tokenizer, template


def with_empty_content(messages):
    out = copy.deepcopy(messages)
    for m in out:
        if m.get("role") == "assistant" and m.get("content") is None:
            m["content"] = ""
    return out


def main():
    for spec in TEMPLATES.values():
        if not os.path.isfile(os.path.join(TOKENIZERS, spec["tokenizer"], "tokenizer.json")):
            sys.exit("missing %s (run tools/fetch-tokenizers)" % os.path.join(TOKENIZERS, spec["tokenizer"]))
    renderings = []
    for name in TEMPLATES:
        tokenizer, template = load(name)

        def render(messages, tools, add_generation_prompt):
            prompt = tokenizer.apply_chat_template(
                copy.deepcopy(messages), tools=tools, add_generation_prompt=add_generation_prompt,
                tokenize=False, return_dict=False, chat_template=template)
            if not isinstance(prompt, str):
                raise TypeError("apply_chat_template returned %s, not str" % type(prompt).__name__)
            return prompt

        # A broken setup must stop the script, not be recorded as "the template raised".
        render([{"role": "user", "content": "hi"}], None, True)
        for index, conversation in enumerate(CONVERSATIONS):
            for add_generation_prompt in (True, False):
                entry = {"template": name, "conversation": index, "add_generation_prompt": add_generation_prompt}
                for key, messages in (("prompt", conversation["messages"]),
                                      ("prompt_empty_content", with_empty_content(conversation["messages"]))):
                    error_key = "error" if key == "prompt" else "error_empty_content"
                    try:
                        entry[key] = render(messages, conversation.get("tools"), add_generation_prompt)
                    except Exception as error:  # the template raised
                        entry[error_key] = "%s: %s" % (type(error).__name__, error)
                renderings.append(entry)
        print("%s: %d renderings" % (name, 2 * len(CONVERSATIONS)))
    fixture = {"templates": TEMPLATES, "conversations": CONVERSATIONS, "renderings": renderings}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %s" % OUT)


if __name__ == "__main__":
    main()
