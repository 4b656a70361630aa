"""A STOP training run started as a subprocess by tests/test_train_kill.py (killed with SIGKILL).

    python tests/train_job.py MODEL_DIR OUT_DIR [STEP N MARKER]

With ``STEP N MARKER`` the run stops inside the N-th commit step named STEP of this process
(see ``stoplib.epoch_commits._COMMIT_HOOK``): it writes MARKER and waits there to be killed.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from stoplib import epoch_commits, train  # noqa: E402
from tests.test_train import make_scorer, synthetic  # noqa: E402

CONFIG = train.TrainConfig(lr=1e-2, epochs=4, batch_size=16, warmup_steps=2, seed=5)


def records() -> tuple[list[train.LabelRecord], list[train.LabelRecord]]:
    return synthetic(160, 21), synthetic(32, 22)


def pause_at(step: str, occurrence: int, marker: Path) -> None:
    seen = []

    def hook(name: str) -> None:
        seen.append(name)
        if name == step and seen.count(step) == occurrence:
            marker.write_text(f"paused at {step} #{occurrence}")
            time.sleep(600)

    epoch_commits._COMMIT_HOOK = hook


if __name__ == "__main__":
    torch.set_num_threads(1)
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    if len(sys.argv) > 3:
        pause_at(sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
    train_records, val_records = records()
    result = train.train_stop(make_scorer(model_dir), train_records, val_records, CONFIG, out_dir, progress=False)
    print(f"done: {len(result.history)} epochs, best {result.best_epoch}")
