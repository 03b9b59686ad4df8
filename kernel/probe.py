"""``python -m kernel.probe URL``: exit 0 when URL answers 2xx in time, else 1 (the images' HEALTHCHECK; no curl).

The runtime images carry no curl or wget: Python is already there, and one less package is one less to patch.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request


def probe(url: str, *, timeout_s: float = 3.0) -> bool:
    """Whether ``url`` answers a GET with a 2xx status within ``timeout_s`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    return 0 if probe(args.url, timeout_s=args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
