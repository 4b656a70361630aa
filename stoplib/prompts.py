"""Prompt text per problem kind and prompt token ids per model (chat template or plain encoding).

The paper's zero-shot CoT prompts (§4.1, Appendix C): math problems get ``MATH_INSTRUCTION``;
GPQA gets 'Please show your choice in the answer field with only the choice letter, e.g.,
"ANSWER": "C".' Where the instruction goes is not specified; we append it to the question in the
user turn (INFERRED), and for multiple choice we list the options as "A) text" lines and name the
allowed letters. Toy and integer (arithmetic word) problems, and multiple-choice problems whose
question already lists the options (``meta["options_in_prompt"]``, the organism's), are used as
they are; their tasks teach the answer format through solved examples given as earlier chat turns (``few_shot``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from stoplib.problems import Problem

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def multiple_choice_instruction(letters: Sequence[str]) -> str:
    """The answer-format instruction for multiple choice, naming the allowed letters."""
    example = "C" if "C" in letters else letters[0]
    return (
        "Please reason step by step, and show your choice in the answer field with only the "
        f'choice letter (one of {", ".join(letters)}), e.g., "ANSWER": "{example}".'
    )


def format_question(problem: Problem) -> str:
    """The user-turn text: the question followed by the instruction for its kind."""
    if problem.kind == "math":
        return f"{problem.prompt}\n\n{MATH_INSTRUCTION}"
    if problem.kind == "multiple_choice" and problem.meta.get("options_in_prompt"):
        return problem.prompt  # a generated task that writes its options into the question itself
    if problem.kind == "multiple_choice":
        options = "\n".join(f"{letter}) {text}" for letter, text in problem.options or ())
        instruction = multiple_choice_instruction(problem.letters)
        return f"{problem.prompt}\n\n{options}\n\n{instruction}"
    if problem.kind in ("toy", "integer"):
        return problem.prompt
    raise ValueError(f"unknown problem kind {problem.kind!r}")


def _as_int_list(encoded: Any) -> list[int]:
    """Plain ``list[int]`` from what ``apply_chat_template``/``encode`` return across versions."""
    if isinstance(encoded, Mapping) or hasattr(encoded, "input_ids"):  # dict / BatchEncoding
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):  # tensor / array
        encoded = encoded.tolist()
    encoded = list(encoded)
    if encoded and isinstance(encoded[0], (list, tuple)):  # a batch of one
        if len(encoded) != 1:
            raise ValueError(f"expected one sequence of token ids, got a batch of {len(encoded)}")
        encoded = list(encoded[0])
    return [int(token) for token in encoded]


def build_prompt_ids(
    problem: Problem,
    tokenizer: Any,
    *,
    system: str | None = None,
    few_shot: Sequence[tuple[str, str]] = (),
    use_chat_template: bool | None = None,
    chat_kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Token ids of the prompt for one problem, ready for generation.

    With a chat template (used by default when the tokenizer has one): the optional system turn,
    the ``few_shot`` (question, solution) pairs as earlier user/assistant turns, the user turn
    ``format_question(problem)`` and the generation prompt; ``chat_kwargs`` go to the template
    (e.g. ``reasoning_effort="medium"`` for gpt-oss). Without one: the plain encoding of the same
    texts separated by blank lines, and a warning naming the tokenizer, because a chat model
    prompted without its template usually behaves very differently (pass
    ``use_chat_template=False`` to silence it for a base model).
    """
    text = format_question(problem)
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if use_chat_template is None:
        use_chat_template = has_template
        if not has_template:
            import warnings

            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            warnings.warn(f"the tokenizer of {name!r} has no chat template: prompts are plain text. If the model "
                          "is a chat model this changes its behaviour; pass use_chat_template=False if intended.",
                          stacklevel=2)
    if use_chat_template:
        if not has_template:
            raise ValueError("use_chat_template=True but the tokenizer has no chat_template")
        messages = [{"role": "system", "content": system}] if system is not None else []
        for question, solution in few_shot:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        messages.append({"role": "user", "content": text})
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, **(chat_kwargs or {})
        )
        return _as_int_list(encoded)
    if chat_kwargs:
        raise ValueError("chat_kwargs given but no chat template is used")
    blocks = ([system] if system is not None else []) + [f"{q}\n{a}" for q, a in few_shot] + [text]
    return _as_int_list(tokenizer.encode("\n\n".join(blocks)))


@dataclass(frozen=True)
class PromptConfig:
    """How problems become prompts: system turn, solved examples as earlier turns, template args."""

    system: str | None = None
    few_shot: tuple[tuple[str, str], ...] = ()
    chat_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def for_source(cls, source: str | None, *, chat_kwargs: Mapping[str, Any] | None = None) -> "PromptConfig":
        """The prompt of a problem source: a generated task's own system turn and examples, or the
        paper's zero-shot prompt for benchmark files."""
        from .tasks import get_task, is_task

        if is_task(source):
            task = get_task(str(source))
            return cls(system=task.system, few_shot=tuple(task.few_shot), chat_kwargs=dict(chat_kwargs or {}))
        return cls(chat_kwargs=dict(chat_kwargs or {}))

    def ids(self, problem: Problem, tokenizer: Any) -> list[int]:
        """Prompt token ids of ``problem`` (:func:`build_prompt_ids` with these settings)."""
        return build_prompt_ids(problem, tokenizer, system=self.system, few_shot=self.few_shot,
                                chat_kwargs=dict(self.chat_kwargs) or None)


@dataclass(frozen=True)
class ModelFamily:
    """What a model family needs at prompt time; ``patterns`` match lower-cased model ids."""

    name: str
    patterns: tuple[str, ...]
    use_system_prompt: bool
    chat_kwargs: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""


MODEL_FAMILIES: dict[str, ModelFamily] = {
    "deepseek-r1-distill-qwen": ModelFamily(
        name="deepseek-r1-distill-qwen",
        patterns=("deepseek-r1-distill-qwen", "deepseek-r1-0528-qwen3"),
        use_system_prompt=False,
        notes="DeepSeek-R1 recommends no system prompt: all instructions in the user turn. "
        "The template opens the <think> block. Paper: DS-Qwen-2.5-1.5B/7B and DS-Qwen-3-8B "
        "(INFERRED: DeepSeek-R1-0528-Qwen3-8B), T=0.6, top-p 0.95, top-k 40.",
    ),
    "qwen3": ModelFamily(
        name="qwen3",
        patterns=("qwen3",),
        use_system_prompt=True,
        notes="Thinking mode is on by default; pass chat_kwargs={'enable_thinking': False} to "
        "turn it off.",
    ),
    "gpt-oss": ModelFamily(
        name="gpt-oss",
        patterns=("gpt-oss",),
        use_system_prompt=True,
        chat_kwargs={"reasoning_effort": "medium"},
        notes="Harmony chat format; the paper uses reasoning effort 'medium' "
        "(chat_kwargs={'reasoning_effort': 'medium'}).",
    ),
    "toy": ModelFamily(
        name="toy",
        patterns=("toy",),
        use_system_prompt=False,
        notes="The built-in model organism (stoplib.toy): its tokenizer has its own chat "
        "template; toy problems are used as they are.",
    ),
}


def family_of(model_id: str) -> str:
    """The MODEL_FAMILIES key matching a model id or path, or "unknown"."""
    lowered = model_id.lower()
    for name, family in MODEL_FAMILIES.items():
        if any(pattern in lowered for pattern in family.patterns):
            return name
    return "unknown"
