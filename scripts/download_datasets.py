"""Download Tiny-ImageNet-200 and COCO128 into their original layouts (``--help`` lists the sources).

    python scripts/download_datasets.py                        # both; the mirror folder if it has them, else download
    python scripts/download_datasets.py --source official      # both, from the official sources
    python scripts/download_datasets.py --dataset all --from-mirror ../shared/datasets   # no network

With no ``--from-mirror`` and no ``--source``, each data set comes from the mirror folder
``CV_DATASETS_MIRROR_DIR`` (default ``../shared/datasets``) when that folder holds it, and from its
official source otherwise; the log names the source. ``scripts/setup/download_datasets.py`` is the
same command. The logic lives in :mod:`training.data.download_cli` and :mod:`training.data.download`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python scripts/download_datasets.py`), the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data.download_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
