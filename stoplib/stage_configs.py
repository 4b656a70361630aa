"""The settings of dataset construction, the STOP module and its training.

Frozen dataclasses the store hashes into run keys, so their field names, order and defaults are
part of every result's address. They sit below the code they configure (``labels``, ``stop``,
``train``): ``config.py`` builds them without importing that code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import params
from .engines.base import SamplingParams

#: Starting points of the learned [STOP] embedding.
EMBEDDING_INITS = {
    "vocab": "the token's own row when the vocabulary has a spare one (as the authors' code does), else the mean",
    "mean": "the mean of the input embeddings",
    "random": "normal noise with the input embeddings' standard deviation (from the training seed)",
}
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class JsonConfig:
    """JSON round trip for frozen config dataclasses with a ``target_modules`` tuple."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["target_modules"] = list(d["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names - {"format_version", "hidden_size"}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
        d = {k: v for k, v in d.items() if k in names}
        if "target_modules" in d:
            d["target_modules"] = tuple(d["target_modules"])
        return cls(**d)


@dataclass(frozen=True)
class LabelConfig:
    """Every number of the construction; defaults are the paper's."""

    n_filter: int = 32
    band: tuple[int, int] = (4, 28)  # inclusive, in correct paths out of n_filter
    prefix_lens: tuple[int, ...] = (2048,)
    k_rollouts: int = 32
    sampling: SamplingParams = SamplingParams()
    max_prefixes_per_problem: int | None = None  # None: every filtering path that reaches L
    val_fraction: float = 0.1
    exclude_ids: tuple[str, ...] = ()  # decontamination: evaluation problems never used
    batch_prefixes: int = 64  # prefixes whose rollouts are sampled in one engine call
    model: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        low, high = self.band
        if not 0 <= low <= high <= self.n_filter:
            raise ValueError(f"band {self.band} must satisfy 0 <= low <= high <= n_filter={self.n_filter}")
        if not self.prefix_lens or min(self.prefix_lens) < 1:
            raise ValueError(f"prefix_lens must be positive, got {self.prefix_lens}")
        if self.k_rollouts < 1:
            raise ValueError(f"k_rollouts must be >= 1, got {self.k_rollouts}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class StopConfig(JsonConfig):
    """Architecture of a STOP module. Defaults: M=4 tokens, all-linear LoRA r=8, alpha=2r.

    ``use_adapter=False`` is the paper's "w/o adapter" ablation: no LoRA, and the [STOP]
    embedding is frozen, so only the head trains — a linear probe on the frozen model's
    final state at the last [STOP] position.
    """

    token: str = "[STOP]"
    num_tokens: int = 4
    use_adapter: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_LINEAR
    #: Where the [STOP] embedding starts (see :data:`EMBEDDING_INITS`).
    embedding_init: str = "vocab"
    base_model: str = ""
    base_revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        params.text("token", self.token)
        params.positive_int("num_tokens", self.num_tokens)
        params.choice("embedding_init", self.embedding_init, tuple(EMBEDDING_INITS))
        if self.use_adapter:
            params.positive_int("lora_r", self.lora_r)
            params.number("lora_alpha", self.lora_alpha, 0, float("inf"))
            if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
                raise ValueError(f"parameter lora_dropout={self.lora_dropout!r}: expected a number in [0, 1)")
            if not self.target_modules or not all(isinstance(m, str) for m in self.target_modules):
                raise ValueError(f"parameter target_modules={self.target_modules!r}: expected module names")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Paper (Table 12): lr 2e-5, 15 epochs, global batch 128, bf16 on GPU."""

    lr: float = 1e-3
    epochs: int = 8
    batch_size: int = 64
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_length: int = 2048
    truncate: str = "error"  # "error" | "left"
    hard_labels: bool = False  # ablation: train on the original path's correctness instead of s_mc
    seed: int = 0
    #: Train on the labels of this fraction of the training problems (chosen by a hash of the
    #: problem id, so a smaller fraction's problems are among a larger one's); validation is whole.
    label_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.truncate not in ("error", "left"):
            raise ValueError(f"truncate must be 'error' or 'left', got {self.truncate!r}")
        for name in ("epochs", "batch_size", "grad_accum", "max_length"):
            params.positive_int(name, getattr(self, name))
        params.positive_int("warmup_steps", self.warmup_steps, 0)
        params.positive_int("seed", self.seed, 0)
        params.number("lr", self.lr, 0, float("inf"))
        if isinstance(self.label_fraction, bool) or not isinstance(self.label_fraction, (int, float)) \
                or not 0 < self.label_fraction <= 1:
            raise ValueError(f"parameter label_fraction={self.label_fraction!r}: expected a number in (0, 1]")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or not 0 <= self.weight_decay < 1:
            raise ValueError(f"parameter weight_decay={self.weight_decay!r}: expected a number in [0, 1)")
