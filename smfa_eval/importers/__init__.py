"""Importers of published unlearning benchmarks into the smfa benchmark layout
(`smfa bench import mllmu|clear`)."""

from __future__ import annotations

IMPORTERS = {"mllmu": "smfa_eval.importers.mllmu:import_mllmu", "clear": "smfa_eval.importers.clear:import_clear"}
