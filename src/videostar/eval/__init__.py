"""Benchmark evaluation: TempCompass, Kinetics700-QA, FineDiving and STEP multi-step QA.

Each suite has a pure scoring layer (predictions and labels in, metrics out, no model) and one
entry function ``evaluate_<suite>`` that answers the benchmark with the resumable batched
generation of :mod:`videostar.generation`, scores the answers and writes a JSON report.
:mod:`videostar.eval.report` holds what the suites share: accuracy tallies, the output layout,
the report file and its table.
"""
