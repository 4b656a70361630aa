"""A character-level tokenizer for the organism (``tokenizers`` inside ``PreTrainedTokenizerFast``).

One token per character: ``\\n`` and printable ASCII (32..126); anything else maps to ``<unk>``.
Special tokens ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2), ``<unk>`` (3). Plain ``encode`` adds no
special tokens; the chat template renders a conversation as ``<bos>Q:{question}\\nA:{answer}<eos>``
(the generation prompt is ``A:``). Saved with ``save_pretrained``, it loads with
``AutoTokenizer.from_pretrained`` (no custom code), so vLLM can serve the organism too.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Q:{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}A:{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)


def vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens first, then the characters."""
    tokens = list(SPECIAL_TOKENS) + list(CHARACTERS)
    return {t: i for i, t in enumerate(tokens)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The organism's tokenizer (deterministic; no files needed)."""
    core = Tokenizer(models.WordLevel(vocab=vocabulary(), unk_token=UNK))
    # every single character (including newline) is its own pre-token
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def prompt_text(question: str) -> str:
    """The rendered generation prompt for one question (what the chat template produces)."""
    return f"{BOS}Q:{question}\nA:"


def save_tokenizer(out_dir: str | Path) -> Path:
    """Write the tokenizer files into ``out_dir`` (loadable by transformers 4 and 5)."""
    out_dir = Path(out_dir)
    build_tokenizer().save_pretrained(out_dir)
    # transformers 5 writes its own class name "TokenizersBackend"; the generic fast-tokenizer
    # class name loads the same files in transformers 5 and in older versions (e.g. under vLLM).
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return out_dir
