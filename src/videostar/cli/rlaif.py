"""The RLAIF stage after the cycles: ``preferences``, ``reward-model`` and ``ppo`` (or ``grpo``)."""

from __future__ import annotations

import argparse

from videostar.cli.common import (
    Subcommands,
    add_adapter_base,
    add_training_outputs,
    report_step,
    training_outputs,
)
from videostar.config import RunConfig


def add_parsers(sub: Subcommands) -> None:
    prefs = sub.add_parser("preferences", help="RLAIF: sample two answers per prompt and judge them")
    prefs.add_argument("--model", required=True, help="the SFT model")
    prefs.add_argument("--records", required=True)
    prefs.add_argument("--out", required=True, help="folder for pairs.jsonl, heldout.jsonl, split.json")

    rew = sub.add_parser("reward-model", help="RLAIF: train the reward model on preference pairs")
    rew.add_argument("--model", required=True, help="the SFT model")
    rew.add_argument("--preferences", required=True, help="a 'videostar preferences' output folder")
    add_training_outputs(rew)

    ppo = sub.add_parser("ppo", help="RLAIF: align the SFT model with PPO against the reward model")
    ppo.add_argument("--model", required=True, help="the SFT model")
    ppo.add_argument("--reward-model", required=True, help="the reward model folder")
    ppo.add_argument("--records", required=True)
    ppo.add_argument("--preferences", required=True, help="its split.json names the held-out videos")
    add_training_outputs(ppo)  # checkpoints/ beside the metrics file
    ppo.add_argument("--fresh", action="store_true",
                     help="discard checkpoints of other work in --out instead of refusing")
    grpo = sub.add_parser("grpo", help="RLAIF: align the SFT model with GRPO, the verifier as the reward")
    grpo.add_argument("--model", required=True, help="the SFT model")
    grpo.add_argument("--reward-model", required=True,
                      help="the reward model folder (read only when GRPO mixes its score into the reward)")
    grpo.add_argument("--records", required=True)
    grpo.add_argument("--preferences", required=True, help="its split.json names the held-out videos")
    add_training_outputs(grpo)  # checkpoints/ beside the metrics file
    grpo.add_argument("--fresh", action="store_true",
                      help="discard checkpoints of other work in --out instead of refusing")
    for p, func in ((prefs, cmd_preferences), (rew, cmd_reward_model), (ppo, cmd_ppo), (grpo, cmd_grpo)):
        add_adapter_base(p)
        p.set_defaults(func=func)


def cmd_preferences(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    metrics = rlaif.preferences(args.model, args.records, args.out, cfg, adapter_base=args.adapter_base)
    return report_step("preferences", metrics)


def cmd_reward_model(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    model_out, metrics_out = training_outputs(args)
    metrics = rlaif.run_reward_model_step(args.model, args.preferences, model_out, metrics_out, cfg,
                                          adapter_base=args.adapter_base, parent_run=args.parent_run)
    return report_step("reward model", metrics)


def cmd_ppo(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    model_out, metrics_out = training_outputs(args)
    metrics = rlaif.ppo(args.model, args.reward_model, args.records, args.preferences, model_out,
                        metrics_out, cfg, adapter_base=args.adapter_base, parent_run=args.parent_run,
                        fresh=args.fresh)
    return report_step("ppo", metrics)


def cmd_grpo(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    model_out, metrics_out = training_outputs(args)
    metrics = rlaif.grpo(args.model, args.reward_model, args.records, args.preferences, model_out,
                         metrics_out, cfg, adapter_base=args.adapter_base, parent_run=args.parent_run,
                         fresh=args.fresh)
    return report_step("grpo", metrics)
