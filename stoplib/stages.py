"""The pipeline's stages as cached functions of a ``RunConfig`` (what notebooks and the CLI call).

Each stage stores its output under ``results_root/<stage>/<hash of what it depends on>/`` and
returns it at once when it is already complete (``force=True`` recomputes). Long stages
resume after an interruption.

Every name is importable from here; the code lives in one module per job:

- ``stage_labels``: the labels stage, its shards and their merge, the dataset checks;
- ``stage_bank``: the rollout bank, its shards and their merge;
- ``stage_training``: the STOP variants and the text verifier, several at once, loading STOP;
- ``stage_keys``: what the store entries of the labels and the bank depend on;
- ``stage_runs``: a stage's run directory: cleared for ``force=True``, split into shards;
- ``stage_inputs``: the training and evaluation problems, their prompts, the context check;
- ``stage_engine``: the sampling engine, tokenizer and vocabulary size of the model, its threads.

Patch a name where its code looks it up (``stage_labels.check_dataset``, not
``stages.check_dataset``).
"""

from __future__ import annotations

from .models import model_identity  # noqa: F401
from .stage_bank import bank_stage, merge_bank  # noqa: F401
from .stage_engine import engine_for, load_tokenizer, use_threads, vocab_size  # noqa: F401
from .stage_inputs import check_context, eval_problems, prompts_for, train_problems  # noqa: F401
from .stage_keys import _INPUTS, _inputs, bank_key, inputs_hash, labels_key  # noqa: F401
from .stage_labels import check_dataset, label_config, labels_stage, merge_labels  # noqa: F401
from .stage_runs import (Shard, _check_shards, _fresh, _shard_dirs, _shard_key, check_shard,  # noqa: F401
                         parse_shard, shard_positions)
from .stage_training import (_BASE_MODELS, TRAINABLE, VARIANTS, _train, _train_variant,  # noqa: F401
                             _train_verifier, _trained_dir, _training_stage, is_trained, load_stop,
                             shared_base_model, stop_stage, train_parallel, variant_configs,
                             verifier_config, verifier_stage, verifier_train_config)
from .store import Store  # noqa: F401
