"""Shared fixtures: a tiny Llama built from a config with a real `tokenizers` tokenizer.

The model is random (untrained) but real: it is saved with ``save_pretrained`` and loaded
back with ``from_pretrained``, exactly as a hub model would be.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

@pytest.fixture(autouse=True, scope="session")
def converted_models_once(tmp_path_factory):
    """GGUF presets (SmolLM2) are converted once per test session, not once per results root."""
    if "STOPLIB_MODELS_DIR" not in os.environ:
        os.environ["STOPLIB_MODELS_DIR"] = str(tmp_path_factory.mktemp("models"))
    yield


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models run fastest on one thread (two threads on a shared 2-core machine thrash)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 +-*=:\\{}\n")
SPECIAL = ["<pad>", "<bos>", "<eos>"]


def build_char_tokenizer():
    """A character-level PreTrainedTokenizerFast with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = "{{ bos_token }}{% for m in messages %}q:{{ m['content'] }}\n{% endfor %}a:"
    return fast


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Directory holding a saved tiny Llama + tokenizer (session-scoped)."""
    path = tmp_path_factory.mktemp("tiny_llama")
    tok = build_char_tokenizer()
    model = build_tiny_llama(len(tok))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
