#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from the repo's
fixtures and hand-written cases. Small seeds only: libFuzzer mutates them. Run from anywhere;
the committed corpus is its output (crash inputs found later are added by hand, named crash-*)."""
import json
import os
import struct

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors):
    """tensors: name -> (dtype, shape, bytes)"""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def openai_request():
    chat = {"model": "troupe-demo", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "What is 4821 + 379?"}],
            "temperature": 0, "max_tokens": 16}
    write("openai_request", "chat.json", json.dumps(chat))
    chat2 = dict(chat, messages=[{"role": "user", "content": [{"type": "text", "text": "Sort 42, 7"}]},
                                 {"role": "assistant", "content": "<think>x</think>7, 42"},
                                 {"role": "user", "content": "ünï 🙂"}],
                 stream=True, stream_options={"include_usage": True}, n=2, stop=["\n", "x"], logprobs=True,
                 top_logprobs=3, seed=-1, top_k=5, top_p=0.5, stop_token_ids=[1, 2])
    write("openai_request", "chat_options.json", json.dumps(chat2))
    write("openai_request", "completion.json",
          json.dumps({"model": "troupe-demo", "prompt": "Reverse the word planet.", "logprobs": 2, "echo": False}))
    write("openai_request", "completion_ids.json", json.dumps({"model": "m", "prompt": [1, 2, 3], "max_tokens": 3}))
    responses = {"model": "troupe-demo", "instructions": "Be brief.",
                 "input": [{"role": "developer", "content": "Answer."},
                           {"type": "message", "role": "user",
                            "content": [{"type": "input_text", "text": "What is 4821 + 379?"}]},
                           {"type": "reasoning", "id": "rs_1", "summary": []}],
                 "max_output_tokens": 64, "temperature": 0, "stream": True, "store": False,
                 "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": True}},
                 "reasoning": {"effort": "low"}, "metadata": {"k": "v"}}
    write("openai_request", "responses.json", json.dumps(responses))
    write("openai_request", "tokenize.json",
          json.dumps({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}))
    write("openai_request", "detokenize.json", json.dumps({"tokens": [5, 6, 7, 100000]}))


def safetensors_corpus():
    one = safetensors({"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                       "b": ("BF16", [3], b"\x80\x3f" * 3), "e": ("I32", [0], b""),
                       "f8": ("F8_E4M3", [2], b"\x38\x40")})
    write("safetensors", "single", b"S" + one)
    index = {"metadata": {"total_size": 16}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}
    shard = safetensors({"a": ("F16", [4], b"\x00\x3c" * 4)})
    write("safetensors", "index", b"I" + json.dumps(index).encode() + b"\n--shard--\n" + shard)


def model_config():
    for model in sorted(os.listdir(MODELS)):
        config = os.path.join(MODELS, model, "config.json")
        generation = os.path.join(MODELS, model, "generation_config.json")
        if not os.path.exists(config):
            continue
        text = read(config)
        if os.path.exists(generation):
            text += "\n--generation--\n" + read(generation)
        write("model_config", model, text)


def tokenizer():
    # One small tokenizer.json (the loader's seed); the encoder's seeds are texts.
    write("tokenizer", "llama_tiny_tokenizer.json", read(os.path.join(MODELS, "llama-tiny", "tokenizer.json")))
    texts = {"ascii": "Hello, world! It's 2026; 12345 + 678 = 13023.",
             "unicode": "ünïcødé — 日本語 🙂\u0301 \u00a0 tabs\t\tand\r\nnewlines",
             "special": "<|im_start|>user\nhi<|im_end|><s></s><|begin_of_text|>",
             "spaces": "   leading and trailing   ", "bytes": b"\xff\xfe invalid \xc3\x28 utf8"}
    for name, text in texts.items():
        write("tokenizer", "text_" + name, text)


def jinja():
    demo = json.loads(read(os.path.join(MODELS, "troupe-demo", "tokenizer_config.json")))["chat_template"]
    write("jinja", "troupe_demo.jinja", demo)
    cases = {
        "loops": "{% for m in messages %}{{ loop.index }}{{ m.role|upper }}:{{ m.content|trim }}"
                 "{% if not loop.last %}\n{% endif %}{% else %}none{% endfor %}",
        "macro": "{% macro f(x, y=2) %}{{ x * y }}{% if x > 0 %}{{ f(x - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
        "namespace": "{% set ns = namespace(n=0) %}{% for i in range(10) if i is even %}"
                     "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}{{ [1,2,3][::-1]|join(',') }}",
        "tools": "{% if tools %}{{ tools|tojson(indent=2) }}{% endif %}{% for m in messages %}"
                 "{% for c in m.tool_calls|default([]) %}{{ c.function.name }}({{ c.function.arguments|tojson }})"
                 "{% endfor %}{% endfor %}",
        "strings": "{{ 'a,b'.split(',')|length }}{{ 'x' * 3 }}{{ '%s'|format(1) if false else 'y' }}"
                   "{{ messages[0]['content'][1:3] }}{{ 'Hi'.startswith('H') }}{{ raise_exception('no') if 0 }}",
        "set_block": "{% set x %}{{ bos_token }}{% endset %}{{ x ~ eos_token }}{{ 2 ** 10 }}{{ 7 // 2 }}{{ -7 % 3 }}",
        "whitespace": "{%- for m in messages -%}\n  {{- m.content -}}\n{%- endfor %}{# comment #}",
    }
    for name, text in cases.items():
        write("jinja", name + ".jinja", text)


def step_codec():
    # pipeline/step_codec.cpp: StepHeader {u32 magic, i32 mode, u64 step, i64 tokens, seqs, hidden,
    # block ids, i32 dtype, i32 reserved}; per seq {num_new, context_len, needs_logits, table_len}.
    positions, seqs, tables = [0, 1, 2], [(2, 2, 1, 1), (1, 5, 1, 2)], [0, 1, 2]
    hidden = 4
    header = struct.pack("<IiqqqqqiI", 0x54535450, 0, 9, 3, 2, hidden, len(tables), 0, 0)
    body = struct.pack("<3i", *positions) + b"".join(struct.pack("<4i", *s) for s in seqs)
    body += struct.pack("<3i", *tables) + struct.pack("<12f", *range(12))
    write("step_codec", "step", b"\x00" + header + body)
    logits = struct.pack("<IiQqq", 0x544c4f47, 0, 7, 2, 3) + struct.pack("<6f", *range(6))
    write("step_codec", "logits", b"\x01" + logits)
    frame = struct.pack("<4I", 0x46505254, 0, 0, 2) + struct.pack("<2q", 2, 2) + struct.pack("<4f", 1, 2, 3, 4)
    write("step_codec", "frame_tensor", b"\x02" + frame)
    error = struct.pack("<4I", 0x46505254, 1, 3, 0) + b"stage 2 failed"
    write("step_codec", "frame_error", b"\x02" + error)


def config_toml():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        write("config_toml", name, read(os.path.join(ROOT, "configs", name)))
    write("config_toml", "types.toml", 'port = 8000\nratio = 0.5\nflag = true\nlist = ["a", "b"]\n'
                                       'name = "x"  # comment\n[section]\nkey = 1\n')


def grammar():
    """Byte 0: the kind (0 json_object, 1 json_schema, 2 regex, 3 choice); then the spec, then
    optionally \x01 and text for the matcher to accept."""
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 3, None]}, "maxItems": 3},
        "ref": {"$ref": "#/$defs/node"}},
        "required": ["name"], "$defs": {"node": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]}}}
    write("grammar", "json_object", b"\x00\x01{\"a\": [1, 2.5e3, true, null")
    write("grammar", "json_schema", b"\x01" + json.dumps(schema).encode() + b"\x01{\"name\": \"x")
    write("grammar", "regex", b"\x02(\\d{1,3}\\.){3}\\d{1,3}|[a-zA-Z_][\\w-]*?@(ab)+\x01192.16")
    write("grammar", "regex_classes", b"\x02[^\\s\"]{2,5}\\b(?:x|y)*\\S+$")
    write("grammar", "choice", b"\x03" + json.dumps(["yes", "no", "maybe \u00e9"]).encode() + b"\x01ma")


openai_request()
safetensors_corpus()
model_config()
tokenizer()
jinja()
step_codec()
config_toml()
grammar()
