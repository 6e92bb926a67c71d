#!/usr/bin/python3
"""Renders conversations with a model's own chat template (tokenizer_config.json's
chat_template) through Jinja2 as Hugging Face transformers does (a sandboxed environment with
trim_blocks and lstrip_blocks, add_generation_prompt false, the config's special tokens), for
tests/test_chat.c: edge cases beyond tests/fixtures/chat (content trimming, reasoning,
several assistant turns after the last user turn, a system message not first, tool
responses, special-token text and decomposed accents in content).
Usage: chat_render.py MODEL_DIR OUT.json -> [{"messages": [...], "text": "..."}, ...]"""
import json, os, sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

CASES = [
    [{"role": "user", "content": "  padded question \n\n"}, {"role": "assistant", "content": "\n\tpadded answer\u3000 "}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Hello again."}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "OK"}],
    [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n5"}],
    [{"role": "user", "content": "Two replies"}, {"role": "assistant", "content": "One."}, {"role": "assistant", "content": "Two."}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>old reasoning</think>A1"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}],
    [{"role": "user", "content": "Q"}, {"role": "system", "content": "Late system."}, {"role": "assistant", "content": "A"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "calling"},
     {"role": "user", "content": "<tool_response>42</tool_response>"}, {"role": "assistant", "content": "It is 42."}],
    [{"role": "user", "content": "Say <|eot_id|> and <|im_end|> literally."}, {"role": "assistant", "content": "<|im_start|> ok <|end_header_id|>"}],
    [{"role": "user", "content": "caf\u0065\u0301 \u65e5\u672c\u8a9e \U0001F680 1234567"}, {"role": "assistant", "content": "na\u0131\u0308ve 3.14159 \u00c5"}],
    [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "\nA starts with a newline"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}],
    [{"role": "user", "content": "Empty answer"}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "Code"}, {"role": "assistant", "content": "def f(x):\n    return x ** 2\n\n\n"}],
]


def token(cfg, key):
    t = cfg.get(key)
    return t.get("content") if isinstance(t, dict) else t


def main():
    model, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(model, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    tpl = env.from_string(cfg["chat_template"])
    special = {k: token(cfg, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    res = [{"messages": m, "text": tpl.render(messages=m, add_generation_prompt=False, **special)} for m in CASES]
    with open(out, "w") as f:
        json.dump(res, f)
    print(f"chat_render: {len(res)} conversations ({model})")


main()
