"""A label-construction job run as a subprocess by tests/test_labels.py (killed mid-run)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_labels import run_job  # noqa: E402

if __name__ == "__main__":
    run_job(Path(sys.argv[1]), Path(sys.argv[2]), marker=Path(sys.argv[3]), workers=int(sys.argv[4]))
