"""Core's sandboxed chat-template renderer gives the transformers engine the prompt that
transformers' own apply_chat_template gives, token for token."""

import sys
from pathlib import Path

import pytest

from modelyard.llm import chat_template

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

CONVERSATIONS = [
    [{"role": "user", "content": "Hello, how are you?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "<tag> & \"quotes\" é"}],
]
# templates that lean on what Hugging Face's renderer gives them: tools and documents unset,
# {% generation %}, tojson's options, namespace, the special tokens, and earlier answers' reasoning
TEMPLATES = [
    None,  # the tiny model's own
    "{{ bos_token }}{% if tools is not none %}TOOLS{% endif %}{% if documents is none %}NODOCS{% endif %}"
    "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}"
    "{% else %}{{ m | tojson(indent=1, sort_keys=true) }}{% endif %}{% endfor %}"
    "{% set ns = namespace(count=0) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% endfor %}"
    "[{{ ns.count }}]{% if add_generation_prompt %}{{ eos_token }}>{% endif %}",
    "{% for m in messages %}{{ m.role }}:{{ m.thinking or '' }}|{{ m.reasoning_content or '' }}|{{ m.content }}\n"
    "{% endfor %}",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama-template"))))


@pytest.mark.parametrize("template", TEMPLATES, ids=["own", "features", "reasoning"])
@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["one", "several"])
def test_core_renders_what_transformers_renders(tokenizer, template, messages):
    if template == TEMPLATES[2]:
        messages = [*messages[:-1], {"role": "assistant", "content": "ok", "reasoning_content": "think"},
                    messages[-1]]
    expected = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
    text = chat_template.render(template or tokenizer.chat_template, messages,
                                special_tokens=tokenizer.special_tokens_map)
    assert list(tokenizer(text, add_special_tokens=False)["input_ids"]) == list(expected)
