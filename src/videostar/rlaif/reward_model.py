"""VLM-RLAIF reward model: the SFT model with a scalar head on the last token.

The backbone (with a fresh LoRA adapter) reads video + prompt + response, and a
``Linear(hidden, 1)`` head maps the last layer's hidden state at the last real token to a
reward. With ``likelihood_weight`` (RewardModelConfig; 0 in the released recipe) the reward adds
that times the mean log-probability of the response under the same backbone's LM head
(SimPO's length-normalized implicit reward, Meng et al. 2024). It is trained on preference
pairs with the Bradley-Terry loss plus a small centering term, and judged by pairwise accuracy
on held-out pairs. The saved folder is a LoRA adapter + processor + model card (``kind:
reward``, with the weight) + ``reward_head.safetensors``, so PPO can initialise its value model
from it without merging the adapter.
"""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videostar.config import RewardModelConfig, VideoConfig
from videostar.data.records import is_finite_number, read_valid
from videostar.errors import RecordError, VideostarError
from videostar.model import (
    LoadedModel,
    add_lora,
    load_model,
    plain_model,
    read_card,
    save_model,
)
from videostar.resume import model_content, published_result, stamp_digest
from videostar.rlaif.ppo_math import logprobs_from_logits
from videostar.store import resolve
from videostar.training import distributed as dist
from videostar.training import loop
from videostar.training.checkpoints import Checkpoints, folder_for
from videostar.training.loop import MicroBatch, decode_batch

HEAD_FILE = "reward_head.safetensors"
"""The scalar head, next to the adapter: PEFT saves only the adapter, never extra modules."""


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, center_coef: float = 1e-3
) -> torch.Tensor:
    """Mean ``BCEWithLogits(r_chosen - r_rejected, 1)`` + ``center_coef * |mean reward|``.

    The BT term only fixes reward differences; the centering term pins the free offset near 0
    so rewards stay on a stable scale for PPO (and for a value model initialised from them).
    """
    margin = r_chosen - r_rejected
    bt = torch.nn.functional.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))
    return bt + center_coef * torch.cat([r_chosen, r_rejected]).mean().abs()


def bradley_terry_share(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, center_coef: float, pairs: float
) -> torch.Tensor | None:
    """This rank's part of :func:`bradley_terry_loss` over the ``pairs`` pairs of all ranks (None
    when the rank has none); every rank calls it, to sum the rewards.

    The BT mean splits into per-rank sums over the global pair count. The centering term is not
    a sum (|mean| of all rewards), so each rank backpropagates ``sign(global mean) * its rewards'
    sum / 2n``: the same gradient. The summed parts of all ranks are :func:`bradley_terry_loss`
    on the whole batch, and so are their summed gradients; alone, it is that loss.
    """
    margin = r_chosen - r_rejected
    bt = torch.nn.functional.binary_cross_entropy_with_logits(
        margin, torch.ones_like(margin), reduction="sum")
    rewards = torch.cat([r_chosen, r_rejected]).sum()
    mean = dist.all_sum([float(rewards.detach())])[0] / (2 * pairs)
    if not len(margin):
        return None
    return bt / pairs + center_coef * math.copysign(1.0, mean) * (mean != 0) * rewards / (2 * pairs)


def mean_response_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the mean log-probability of the labelled (response) tokens, each predicted from
    the position before it -> ``[B]``. The mean, not the sum, so that a reward using it does
    not simply favour short responses."""
    targets = labels[:, 1:]
    mask = targets != -100
    logp = logprobs_from_logits(logits[:, :-1], targets.clamp(min=0))
    return (logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last attended position (rows are right-padded, so not always -1)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


class RewardModel(torch.nn.Module):
    """Backbone (a LoadedModel's model, usually with LoRA) + scalar head on the last token.

    It keeps the LoadedModel too, so it can encode (prompt, response, frames) itself exactly
    the way SFT does: the reward model sees the same chat format the policy is trained on.
    When the backbone holds several adapters (PPO's reward and value models share one base),
    ``adapter`` names this model's and is switched on before every pass.
    """

    def __init__(self, lm: LoadedModel, head: torch.nn.Linear | None = None,
                 adapter: str | None = None, trainable: bool = True, likelihood_weight: float = 0.0):
        super().__init__()
        self.lm = lm
        self.backbone = lm.model
        self.adapter, self.trainable = adapter, trainable
        self.likelihood_weight = likelihood_weight
        config = self.backbone.config
        text_config = getattr(config, "text_config", None)
        hidden = getattr(text_config, "hidden_size", None) or config.hidden_size
        # The head stays float32 whatever the backbone dtype: rewards are small differences.
        self.head = head if head is not None else torch.nn.Linear(hidden, 1)
        self.head.to(device=lm.device, dtype=torch.float32)
        self.head.requires_grad_(trainable)

    @property
    def hidden_size(self) -> int:
        return self.head.in_features

    def activate(self) -> None:
        """Make this model's adapter the active one (trainable only if this model is)."""
        if self.adapter is not None and self.backbone.active_adapter != self.adapter:
            self.backbone.set_adapter(self.adapter, inference_mode=not self.trainable)

    def _backbone(self, batch: dict[str, Any]) -> Any:
        """The backbone's output (logits and every layer's hidden states) under this model's
        adapter; ``labels`` is not passed, so the backbone computes no loss."""
        self.activate()
        return self.backbone(**{k: v for k, v in batch.items() if k != "labels"},
                             output_hidden_states=True)

    def hidden_states(self, batch: dict[str, Any]) -> torch.Tensor:
        """The last layer's hidden states ``[B, T, H]``."""
        return self._backbone(batch).hidden_states[-1]

    def forward(self, **batch: Any) -> torch.Tensor:
        """Rewards, shape ``[B]``, for a right-padded batch (with ``labels`` on the response when
        ``likelihood_weight`` is set: :meth:`encode` makes them)."""
        out = self._backbone(batch)
        hidden = out.hidden_states[-1]
        idx = last_token_index(batch["attention_mask"])
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
        reward = self.head(last.float()).squeeze(-1)
        if self.likelihood_weight:
            reward = reward + self.likelihood_weight * mean_response_logprob(out.logits, batch["labels"])
        return reward

    def token_values(self, batch: dict[str, Any], start: int, length: int) -> torch.Tensor:
        """The head at every position ``start .. start + length`` -> ``[B, length]``: PPO's value
        of each response token (the state before it is generated)."""
        hidden = self.hidden_states(batch)[:, start:start + length]
        return self.head(hidden.float()).squeeze(-1)

    def encode(self, prompts: list[str], responses: list[str], frames: list[np.ndarray]) -> dict[str, Any]:
        """The SFT training encoding (answer + EOS), so the last token is the response's EOS."""
        return self.lm.encode_training(prompts, responses, frames)

    @torch.no_grad()
    def score(
        self, prompts: list[str], responses: list[str], frames: list[np.ndarray], batch_size: int = 8
    ) -> torch.Tensor:
        """Rewards (float32, CPU, shape ``[N]``) for N (prompt, response, video frames) triples."""
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(prompts), batch_size):
            sl = slice(i, i + batch_size)
            out.append(self(**self.encode(prompts[sl], responses[sl], frames[sl])).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)


@dataclass
class Pair:
    """One preference: for ``video`` and ``prompt``, ``chosen`` beats ``rejected``."""

    id: str
    video: str
    prompt: str
    chosen: str
    rejected: str
    start: float | None = None
    end: float | None = None


def pair_from_json(row: Any) -> Pair:
    """One pair from a JSON row with the dataclass's keys (``start``/``end`` optional), typed:
    text where text belongs, finite seconds or null for the segment."""
    if not isinstance(row, dict):
        raise RecordError("preference row is not a JSON object")
    missing = [k for k in ("id", "video", "prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise RecordError(f"preference row lacks {missing[0]!r}")
    pair = Pair(str(row["id"]), row["video"], row["prompt"], row["chosen"], row["rejected"],
                row.get("start"), row.get("end"))
    for name in ("video", "prompt", "chosen", "rejected"):
        if not isinstance(getattr(pair, name), str):
            raise RecordError(f"pair {pair.id}: {name} must be a string")
    for name in ("start", "end"):
        value = getattr(pair, name)
        if value is not None and not is_finite_number(value):
            raise RecordError(f"pair {pair.id}: {name} must be a finite number or null")
    return pair


def read_pairs(path: str | Path, errors: list[str] | None = None) -> list[Pair]:
    """A pairs file through the shared reader: a bad row is reported and skipped."""
    return read_valid(path, pair_from_json, errors)


def pair_inputs(rm: RewardModel, pairs: list[Pair], frames: list[np.ndarray]) -> dict[str, Any]:
    """One batch of 2B rows: each pair's chosen response, then each one's rejected."""
    return rm.encode([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                     frames * 2)


def pair_rewards(
    rm: RewardModel, pairs: list[Pair], frames: list[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_chosen, r_rejected) from one forward over :func:`pair_inputs`."""
    rewards = rm(**pair_inputs(rm, pairs, frames))
    return rewards[:len(pairs)], rewards[len(pairs):]


def pairwise_accuracy(
    rm: RewardModel, pairs: list[Pair], video: VideoConfig, batch_size: int = 8
) -> dict[str, Any]:
    """Fraction of pairs with r_chosen > r_rejected (ties count as wrong), and the mean margin."""
    skipped: list[dict[str, str]] = []
    margins: list[torch.Tensor] = []
    was_training = rm.training
    rm.eval()
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            kept, frames = decode_batch(pairs[i:i + batch_size], video, skipped)
            if kept:
                rc, rr = pair_rewards(rm, kept, frames)
                margins.append((rc - rr).cpu())
    rm.train(was_training)
    m = torch.cat(margins) if margins else torch.zeros(0)
    return {"accuracy": float((m > 0).float().mean()) if len(m) else None,
            "margin": float(m.mean()) if len(m) else None, "pairs": len(m), "video_errors": skipped}


def train_reward_model(
    sft_model: str, train_pairs: list[Pair], heldout_pairs: list[Pair], out: str | Path,
    cfg: RewardModelConfig, video: VideoConfig, progress: bool = True, adapter_base: str | None = None,
    quantize: str | None = None,
) -> dict[str, Any]:
    """Train a reward model from ``sft_model`` on preference pairs through the training loop
    (:mod:`videostar.training.loop`) and save it.

    ``sft_model`` may be a pretrained folder or an SFT folder (full or LoRA; ``adapter_base`` is
    where a LoRA SFT model's own base is); a LoRA SFT model is merged first so the reward adapter
    sits on the SFT weights. The card records ``sft_model`` as the reward model's base.

    Under ``torchrun`` every rank calls this (rank r of W takes pairs r, r+W, ... of each global
    batch, see :func:`bradley_terry_share`); rank 0 alone measures, saves and returns the
    metrics. An unfinished ``out`` continues from its newest checkpoint (``<out>-checkpoints``); a
    model this same run saved before it was killed is its result
    (:func:`videostar.resume.published_result`).
    """
    stamp = {"step": "reward_model", "model": model_content(sft_model, adapter_base),
             "quantize": quantize, "pairs": [dataclasses.asdict(p) for p in train_pairs],
             "reward_model": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "checkpoint_steps"},
             "video": dataclasses.asdict(video)}
    done = published_result(out, stamp)
    if done is not None:
        shutil.rmtree(folder_for(out), ignore_errors=True)  # a kill may have spared them
        return done
    if not train_pairs:
        raise VideostarError("no training preference pairs")
    dist.init()
    rank, world = dist.rank(), dist.world_size()
    lm = load_model(sft_model, adapter_base=adapter_base, quantize=quantize, fold=True)
    lm.tuned_from = sft_model  # the reward adapter sits on exactly this model, whatever it was tuned from
    torch.manual_seed(cfg.seed)  # adapter and head initial weights are part of the recipe
    rm = RewardModel(add_lora(lm, cfg.lora), likelihood_weight=cfg.likelihood_weight)
    ordered = list(train_pairs)
    random.Random(cfg.seed).shuffle(ordered)
    batches = [ordered[i:i + cfg.batch_size] for i in range(0, len(ordered), cfg.batch_size)]

    def micro_batch(step: int, skipped: list[dict[str, str]], _clipped: list[str]) -> MicroBatch:
        """Always a micro-batch, empty or not: every rank joins :func:`bradley_terry_share`'s sum."""
        kept, frames = decode_batch(batches[step % len(batches)][rank::world], video, skipped)
        if not kept:
            return MicroBatch(None, 0.0)
        inputs = pair_inputs(rm, kept, frames)
        return MicroBatch(inputs, len(kept), int(inputs["attention_mask"].sum()))

    def loss(forward: Callable[..., Any], inputs: dict[str, Any] | None, pairs: float) -> torch.Tensor | None:
        rewards = forward(**inputs) if inputs is not None else torch.zeros(0)
        half = len(rewards) // 2  # chosen, then rejected (pair_inputs)
        return bradley_terry_share(rewards[:half], rewards[half:], cfg.center_coef, pairs)

    checkpoints = Checkpoints(folder_for(out), stamp, cfg.checkpoint_steps) if cfg.checkpoint_steps else None
    steps = max(1, math.ceil(len(batches) * cfg.epochs))
    trained = loop.run(rm, micro_batch, loss, steps, lr=cfg.lr, weight_decay=0.01,  # AdamW's default
                       warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
                       checkpoints=checkpoints, progress=progress, desc="reward_model")
    if not dist.is_main():  # rank 0 measures, saves and reports
        return {"step": "reward_model", "model": str(out), "rank": rank}
    heldout = pairwise_accuracy(rm, heldout_pairs, video, cfg.batch_size)
    metrics = {
        "pairs": len(train_pairs),
        "heldout_pairs": heldout["pairs"],
        "steps": trained.steps,
        **trained.curve(),
        "heldout_accuracy": heldout["accuracy"],
        "heldout_margin": heldout["margin"],
        "video_errors": trained.video_errors + heldout["video_errors"],
        "seconds": round(trained.seconds, 3),
    }
    result = {"step": "reward_model", "model": str(out), **metrics}
    save_reward_model(rm, out, {"heldout_accuracy": metrics["heldout_accuracy"], "pairs": len(train_pairs),
                                "fingerprint": stamp_digest(stamp), "result": result})
    if checkpoints is not None:  # the model is whole: its checkpoints are spent
        shutil.rmtree(checkpoints.folder, ignore_errors=True)
    return result


def save_reward_model(rm: RewardModel, out: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Adapter + processor + card via ``save_model`` (kind ``reward_model``), then the head file.

    ``save_model`` publishes the folder atomically; should the head fail to write, the folder
    is removed, so a folder without its head never passes for a reward model.
    """
    from safetensors.torch import save_file

    card = {"head": HEAD_FILE, "hidden_size": rm.hidden_size,
            "likelihood_weight": rm.likelihood_weight, **(extra or {})}
    path = save_model(LoadedModel(rm.backbone, rm.lm.processor, rm.lm.source, rm.lm.tuned_from),
                      out, "reward_model", card)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in rm.head.state_dict().items()}
        save_file(state, str(path / HEAD_FILE))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def load_reward_model(
    path: str | Path, adapter_base: str | None = None, device: str | None = None,
    dtype: torch.dtype | None = None, quantize: str | None = None, sft_adapter_base: str | None = None,
) -> RewardModel:
    """A saved reward model, frozen: its base (or ``adapter_base``), the adapter unmerged, the
    head loaded; ``sft_adapter_base`` is where a LoRA SFT model's own base is."""
    lm, head, weight = _load_reward_parts(path, adapter_base, device, dtype, quantize,
                                          sft_adapter_base=sft_adapter_base)
    return RewardModel(lm, head, trainable=False, likelihood_weight=weight).eval()


def load_reward_and_value(
    path: str | Path, adapter_base: str | None = None, device: str | None = None,
    dtype: torch.dtype | None = None, quantize: str | None = None, sft_adapter_base: str | None = None,
) -> tuple[RewardModel, RewardModel]:
    """PPO's frozen reward model and a trainable value model initialised from it.

    Both live on one copy of the base: the reward adapter is loaded twice, as ``reward``
    (frozen) and ``value`` (trainable), each with its own copy of the head.
    ``sft_adapter_base`` is where a LoRA SFT model's own base is.
    """
    import copy

    lm, head, weight = _load_reward_parts(path, adapter_base, device, dtype, quantize, "reward",
                                          sft_adapter_base)
    lm.model.load_adapter(str(resolve(str(path))), adapter_name="value", is_trainable=True)
    reward = RewardModel(lm, head, adapter="reward", trainable=False, likelihood_weight=weight).eval()
    value = RewardModel(lm, copy.deepcopy(head), adapter="value", trainable=True)
    value.activate()
    return reward, value


def _load_reward_parts(
    path: str | Path, adapter_base: str | None, device: str | None, dtype: torch.dtype | None,
    quantize: str | None, adapter_name: str = "default", sft_adapter_base: str | None = None,
) -> tuple[LoadedModel, torch.nn.Linear, float]:
    """The base with the adapter, the head, and the card's ``likelihood_weight``."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    folder = resolve(str(path))
    card = read_card(folder)
    if card["kind"] != "reward_model":
        raise VideostarError(f"{path}: not a reward model (kind {card['kind']!r})")
    base_lm = load_model(adapter_base or card["base"], device, dtype,
                         adapter_base=sft_adapter_base, quantize=quantize, fold=True)
    model = PeftModel.from_pretrained(plain_model(base_lm.model), folder, adapter_name=adapter_name)
    lm = LoadedModel(model.eval(), AutoProcessor.from_pretrained(folder), str(path), card["base"])
    state = load_file(str(folder / card.get("head", HEAD_FILE)))
    head = torch.nn.Linear(state["weight"].shape[1], 1)
    head.load_state_dict(state)
    return lm, head, float(card.get("likelihood_weight", 0.0))
