"""Tests for stoplib.prompts with a tiny real byte-level BPE tokenizer (no downloads)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from stoplib.grading import extract_choice
from stoplib.prompts import (
    MATH_INSTRUCTION,
    MODEL_FAMILIES,
    build_prompt_ids,
    family_of,
    format_question,
)
from stoplib.problems import Problem

SPECIAL = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if reasoning_effort is defined %}effort: {{ reasoning_effort }}\n{% endif %}{% endif %}"
)
MATH = Problem(id="1", prompt="What is $1+1$?", answer="2", kind="math", source="t")
CHOICE = Problem(
    id="2",
    prompt="Which month?",
    answer="B",
    kind="multiple_choice",
    source="t",
    options=(("A", "jan"), ("B", "feb"), ("C", "mar")),
)


def make_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few strings: it round-trips any text exactly."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [MATH_INSTRUCTION, "What is 1+1? Which month? jan feb mar"]
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    tokenizer.chat_template = chat_template
    return tokenizer


def test_format_question_per_kind() -> None:
    assert format_question(MATH) == (
        "What is $1+1$?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    text = format_question(CHOICE)
    assert text.startswith("Which month?\n\nA) jan\nB) feb\nC) mar\n\n")
    assert "one of A, B, C" in text and '"ANSWER": "C"' in text
    # The instruction's example is in the format the grader reads.
    assert extract_choice(text.rsplit("\n", 1)[-1], "ABC") == "C"
    toy = Problem(id="3", prompt="<q>3 4</q>", answer="7", kind="toy", source="toy")
    assert format_question(toy) == "<q>3 4</q>"


def test_chat_template_ids_decode_to_templated_text() -> None:
    tokenizer = make_tokenizer(TEMPLATE)
    ids = build_prompt_ids(MATH, tokenizer)
    assert isinstance(ids, list) and ids and all(type(i) is int for i in ids)
    expected = f"<|user|>{format_question(MATH)}<|end|><|assistant|>"
    assert tokenizer.decode(ids) == expected
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|user|>")
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_system_prompt_and_chat_kwargs() -> None:
    tokenizer = make_tokenizer(TEMPLATE)
    ids = build_prompt_ids(
        CHOICE, tokenizer, system="Be brief.", chat_kwargs={"reasoning_effort": "medium"}
    )
    expected = (
        f"<|system|>Be brief.<|end|><|user|>{format_question(CHOICE)}<|end|>"
        "<|assistant|>effort: medium\n"
    )
    assert tokenizer.decode(ids) == expected


def test_plain_encoding_without_template() -> None:
    tokenizer = make_tokenizer(None)
    with pytest.warns(UserWarning, match="no chat template"):  # a chat model prompted without one misbehaves
        ids = build_prompt_ids(MATH, tokenizer)
    assert all(type(i) is int for i in ids)
    assert tokenizer.decode(ids) == format_question(MATH)
    assert tokenizer.decode(build_prompt_ids(MATH, tokenizer, system="Sys", use_chat_template=False)) == (
        "Sys\n\n" + format_question(MATH)
    )
    with pytest.raises(ValueError, match="chat_template"):
        build_prompt_ids(MATH, tokenizer, use_chat_template=True)


def test_template_can_be_turned_off() -> None:
    tokenizer = make_tokenizer(TEMPLATE)
    ids = build_prompt_ids(MATH, tokenizer, use_chat_template=False)
    assert tokenizer.decode(ids) == format_question(MATH)


def test_family_of() -> None:
    assert family_of("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B") == "deepseek-r1-distill-qwen"
    assert family_of("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B") == "deepseek-r1-distill-qwen"
    assert family_of("Qwen/Qwen3-8B") == "qwen3"
    assert family_of("openai/gpt-oss-20b") == "gpt-oss"
    assert family_of("toy") == "toy"
    assert family_of("meta-llama/Llama-3.1-8B") == "unknown"
    assert MODEL_FAMILIES["gpt-oss"].chat_kwargs == {"reasoning_effort": "medium"}
    assert not MODEL_FAMILIES["deepseek-r1-distill-qwen"].use_system_prompt


def test_few_shot_examples_are_earlier_chat_turns() -> None:
    tokenizer = make_tokenizer(TEMPLATE)
    shots = (("What is 1 + 1?", "1 + 1 = 2\nThe answer is 2."),)
    text = tokenizer.decode(build_prompt_ids(MATH, tokenizer, few_shot=shots))
    assert text.index("What is 1 + 1?") < text.index("The answer is 2.") < text.index(MATH.prompt)
