"""The challenge's spelling of ``scripts/download_datasets.py``: the same command, the same options.

python scripts/setup/download_datasets.py --dataset tiny_imagenet
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, the repository root (two folders up) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.data.download_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
