"""Puts ``benchmarks/`` on ``sys.path`` so that the smoke tests can import its ``_common`` helper
(and, through :func:`_common.load_benchmark`, the benchmark scripts themselves)."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
