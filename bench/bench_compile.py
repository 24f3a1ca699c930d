"""``pipeline compile`` time against the number of cycles: it should grow linearly.

Each cycle is a sub-pipeline the compiler copies into the pipeline once (cycle k+1 runs inside
the pipeline's condition on cycle k's decision, not inside cycle k's graph, which made compiling
cubic). Compiles the default configuration with every optional sub-graph on (the RLAIF stage
where the cycles can stop, an evaluation suite) for each cycle count, in this process after one
warm-up compile, and prints seconds and seconds per cycle; ``--json`` keeps them.

    python bench/bench_compile.py --cycles 5 10 20 40
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from videostar.pipelines.submit import compile_pipeline

from videostar.config import config_from_dict


def config(cycles: int):
    return config_from_dict({
        "decide": {"max_cycles": cycles},
        "rlaif": {"enabled": True},
        "evaluate": {"suites": [{"name": "kinetics700", "data": {"csv": "s3://b/k.csv", "videos": "s3://b/v"}}]},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        compile_pipeline(config(1), Path(tmp) / "warm.yaml")  # imports and first-use costs
        for n in args.cycles:
            started = time.perf_counter()
            out = compile_pipeline(config(n), Path(tmp) / f"p{n}.yaml")
            seconds = time.perf_counter() - started
            rows.append({"cycles": n, "seconds": round(seconds, 2), "per_cycle": round(seconds / n, 3),
                         "yaml_kib": round(out.stat().st_size / 1024)})
            print(f"{n:4d} cycles: {seconds:6.2f} s  ({seconds / n:.3f} s per cycle, "
                  f"{rows[-1]['yaml_kib']} KiB)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
