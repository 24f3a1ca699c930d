"""``videostar pipeline compile|trainjob|submit`` (the Kubeflow pipeline) and ``videostar run``
(the same pipeline on this machine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from videostar.cli.common import Subcommands, int_at_least
from videostar.config import RunConfig
from videostar.errors import ConfigError


def add_parsers(sub: Subcommands) -> None:
    pipe = sub.add_parser("pipeline", help="the Kubeflow pipeline").add_subparsers(
        dest="what", required=True)
    comp = pipe.add_parser("compile", help="compile the cyclic pipeline for --config")
    comp.add_argument("-o", "--output", required=True)
    comp.add_argument("--kubernetes-manifest", action="store_true",
                      help="emit Kubernetes-native Pipeline/PipelineVersion objects (GitOps)")
    comp.add_argument("--namespace")
    comp.set_defaults(func=cmd_pipeline_compile)
    tj = pipe.add_parser("trainjob", help="the TrainJob the sft step creates (launcher: trainjob)")
    tj.add_argument("--run", default="example", help="the pipeline run id the job name derives from")
    tj.add_argument("--cycle", type=int_at_least(0), default=0)
    tj.add_argument("-o", "--output", help="file to write (default: stdout)")
    tj.set_defaults(func=cmd_pipeline_trainjob)
    subm = pipe.add_parser("submit", help="submit a run to a KFP endpoint")
    subm.add_argument("--host", required=True, help="KFP API, e.g. http://localhost:8080")
    subm.add_argument("--run-name")
    subm.add_argument("--namespace")
    subm.set_defaults(func=cmd_pipeline_submit)

    run = sub.add_parser("run", help="run the pipeline")
    run.add_argument("--local", action="store_true", help="on this machine through kfp.local")
    run.add_argument("--root", default="work/pipeline-runs", help="local pipeline root")
    run.set_defaults(func=cmd_run)


def cmd_pipeline_compile(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.pipelines.submit import compile_pipeline

    out = compile_pipeline(cfg, args.output, args.kubernetes_manifest, args.namespace)
    print(f"compiled {cfg.decide.max_cycles} cycles x {cfg.pipeline.num_shards} shards -> {out}")
    return 0


def cmd_pipeline_trainjob(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.training.launch import sft_trainjob

    if cfg.pipeline.sft.launcher.kind != "trainjob":
        raise ConfigError("pipeline.sft.launcher.kind: trainjob is needed to render its TrainJob")
    import yaml

    job = yaml.safe_dump(sft_trainjob(cfg, args.run, args.cycle), sort_keys=False)
    if args.output:
        Path(args.output).write_text(job)
    else:
        print(job, end="")
    return 0


def cmd_pipeline_submit(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.pipelines.submit import submit

    print(submit(cfg, args.host, args.run_name, args.namespace))
    return 0


def cmd_run(args: argparse.Namespace, cfg: RunConfig) -> int:
    if not args.local:
        raise ConfigError("run: only --local is supported here; use 'pipeline submit' for a cluster")
    from videostar.pipelines.local import print_report, run_local

    print_report(run_local(cfg, args.root))
    return 0
