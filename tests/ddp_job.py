"""Data parallel STOP training, started by tests/test_train_parallel.py under a launcher:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_job.py MODEL_DIR OUT_DIR

Trains STOP on the test's records twice (on cached prefix states, and re-encoding every step),
then the text verifier in 2 parts per batch (records as they are, and behind a shared beginning);
process 0 writes each run's history to OUT_DIR/<run>.json.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from stoplib import train  # noqa: E402
from tests.test_train import make_scorer  # noqa: E402
from tests.test_train_parallel import (CONFIG, PARTS, RUNS, VERIFIER_CONFIG, VERIFIER_RUNS,  # noqa: E402
                                      make_verifier, records, verifier_records)

if __name__ == "__main__":
    torch.set_num_threads(1)
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = train.init_distributed()
    assert world == 2, world
    train_records, val_records = records()
    for name, cache_bytes in RUNS.items():
        result = train.train_stop(make_scorer(model_dir), train_records, val_records, CONFIG, out_dir / name,
                                  progress=False, cache_bytes=cache_bytes)
        if rank == 0:
            (out_dir / f"{name}.json").write_text(json.dumps(result.history))
    for name in VERIFIER_RUNS:
        result = train.train_stop(make_verifier(model_dir), *verifier_records(name), VERIFIER_CONFIG, out_dir / name,
                                  progress=False, parts=PARTS)
        if rank == 0:
            (out_dir / f"{name}.json").write_text(json.dumps(result.history))
