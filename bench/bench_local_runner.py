"""Per-task overhead of the local KFP runner, cold and warm.

Each task imports what every videostar step imports (torch, transformers and the Qwen2.5-VL
model classes) and writes one file. Baseline: ``kfp.local.SubprocessRunner(use_venv=False)``
as it comes, a new Python process per task (what a user of kfp.local would otherwise get).
Ours: the same runner whose tasks fork from the warm server of
:mod:`videostar.pipelines.preload`, as ``make demo`` runs. Also the same function called in
this process (a floor). Reports seconds per task and the cold/warm ratio.
(No ``from __future__ import annotations``: KFP reads the component's annotations.)
"""


import argparse
import tempfile
import time

from kfp import dsl, local
from videostar.pipelines.preload import warm_python

from videostar.data.records import write_json


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def step_like(index: int, out: dsl.Output[dsl.Dataset]):
    import torch  # noqa: F401  (what a step imports before its work)
    from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: F401

    with open(out.path, "w") as fh:
        fh.write(str(index))


def per_task(tasks: int, root: str) -> float:
    @dsl.pipeline(name="overhead")
    def chain():
        for i in range(tasks):
            step_like(index=i).set_caching_options(False)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    started = time.perf_counter()
    chain()
    return (time.perf_counter() - started) / tasks


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for i in range(args.tasks):
            step_like.python_func(index=i, out=dsl.Dataset(name="out", uri=f"{tmp}/direct-{i}"))
        direct = (time.perf_counter() - started) / args.tasks  # the first call pays the imports
        cold = per_task(args.tasks, f"{tmp}/cold")
        started = time.perf_counter()
        with warm_python():
            server = time.perf_counter() - started
            warm = per_task(args.tasks, f"{tmp}/warm")

    summary = {"tasks": args.tasks, "in_process_s_per_task": direct, "cold_s_per_task": cold,
               "warm_s_per_task": warm, "warm_server_start_s": server, "cold_over_warm": cold / warm}
    print(f"\nin this process    : {direct:6.3f} s/task (imports paid once)")
    print(f"kfp.local, cold    : {cold:6.3f} s/task  (baseline: a new interpreter per task)")
    print(f"kfp.local, warm    : {warm:6.3f} s/task  (forked from the server; it started in {server:.1f} s)")
    print(f"cold / warm        : {cold / warm:6.1f}x")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
