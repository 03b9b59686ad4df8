"""Where other parts of the system hook into the release gate's run.

Each extension is a :data:`training.gate.report.SectionBuilder`: it receives the finished
:class:`training.gate.report.GateRun` (both versions' results, with their per-sample outputs in
``PrecisionResult.outputs``, and the held-out data in ``run.data``) and returns a report section or None.

Planned here (built elsewhere, wired by whoever merges them):

- the drift reference profile (``services/drift``): built from ``run.data`` and the candidate's outputs on it,
  saved next to the report (``run.report_dir``), and summarised in a section;
- the shadow agreement of the candidate with production on live traffic, as a section (and, if wanted, a check).
"""

from __future__ import annotations

from training.gate.report import SectionBuilder

EXTENSIONS: tuple[SectionBuilder, ...] = ()
