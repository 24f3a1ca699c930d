"""Per-task overhead of the local KFP runner.

Baseline: the same trivial component function called in this process. Ours: a pipeline of
``--tasks`` such components run through ``kfp.local.SubprocessRunner(use_venv=False)``, as
``make demo`` does. Reports seconds per task for both and the overhead per task.
(No ``from __future__ import annotations``: KFP reads the component's annotations.)
"""


import argparse
import tempfile
import time

from kfp import dsl, local

from videostar.data.records import write_json


@dsl.component(base_image="python:3.11")
def touch(index: int, out: dsl.Output[dsl.Dataset]):
    with open(out.path, "w") as fh:
        fh.write(str(index))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for i in range(args.tasks):
            touch.python_func(index=i, out=dsl.Dataset(name="out", uri=f"{tmp}/direct-{i}"))
        direct = (time.perf_counter() - started) / args.tasks

        @dsl.pipeline(name="overhead")
        def chain():
            for i in range(args.tasks):
                touch(index=i).set_caching_options(False)

        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=tmp)
        started = time.perf_counter()
        chain()
        runner = (time.perf_counter() - started) / args.tasks

    summary = {"tasks": args.tasks, "direct_s_per_task": direct, "local_runner_s_per_task": runner,
               "overhead_s_per_task": runner - direct, "ratio": runner / direct if direct else None}
    print(f"\nin-process call : {direct * 1000:9.2f} ms/task")
    overhead = 1000 * (runner - direct)
    print(f"kfp.local task  : {runner * 1000:9.2f} ms/task  (overhead {overhead:.0f} ms/task, "
          f"{summary['ratio']:.0f}x)")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
