"""Download Tiny-ImageNet-200 and COCO128 into their original layouts (``--help`` lists the sources).

    python scripts/download_datasets.py --dataset all                      # official sources
    python scripts/download_datasets.py --dataset all --from-mirror ../shared/datasets   # no network

The logic lives in :mod:`training.data.download`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python scripts/download_datasets.py`), the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data.download import main

if __name__ == "__main__":
    raise SystemExit(main())
