"""``scipy.stats``, imported on first use.

Only the drift checks and the experiments' analysis use it, and few requests reach them; imported at the top of their
modules it cost every api worker and Celery beat 40 MB of its own memory (USS) and 0.7 s of start-up
(docs/adr/0017-service-modules-import-lightly.md). The job worker's pool children, which run the drift checks, import
it on their first check.
"""

from __future__ import annotations

from typing import Any


def stats() -> Any:
    """The ``scipy.stats`` module."""
    from scipy import stats as module

    return module
