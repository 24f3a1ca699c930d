"""What every RL trainer of a LoRA-wrapped video LMM shares (PPO's and GRPO's): sampling at the
configured temperature, the prompt + response join, the EOS mask, the policy's and the
reference's logits (the reference is the same weights with the adapter disabled), and the
resumable checkpoint of the trainable weights, optimizer, history and RNG.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm
from transformers import LogitsProcessorList

from videostar.config import LoraConfig, VideoConfig
from videostar.data.records import Record
from videostar.errors import VideostarError
from videostar.generation import RowSampler
from videostar.model import LoadedModel, add_lora, disable_dropout, load_model
from videostar.training.checkpoints import Checkpoints, trainable
from videostar.training.loop import decode_batch
from videostar.training.state import restoring

Decoded = tuple[list[Record], list[np.ndarray]]
"""Records whose videos decoded, and their frames."""


class SamplingConfig(Protocol):
    """The settings a policy trainer reads itself (PPOConfig and GRPOConfig both have them)."""

    temperature: float
    max_new_tokens: int
    batch_size: int


class PolicyTrainer:
    """The policy half of an RL trainer; subclasses add the update (``step``) and the optimizer."""

    optimizer: torch.optim.Optimizer

    def __init__(self, lm: LoadedModel, cfg: SamplingConfig) -> None:
        if not hasattr(lm.model, "disable_adapter"):
            raise ValueError(f"{type(self).__name__} needs a LoRA-wrapped policy (videostar.model.add_lora)")
        self.lm, self.cfg = lm, cfg
        # The rollout's logprobs come from deterministic passes; dropout in the update passes
        # would move the ratio before any learning (as TRL and OpenRLHF do).
        disable_dropout(lm.model)
        self.params = [p for p in lm.model.parameters() if p.requires_grad]
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.eos_ids = lm.eos_token_ids
        self.sampling = lm.generation_config(cfg.temperature, cfg.max_new_tokens)

    # -- model passes

    def _joined(self, prompts: list[str], frames: list[np.ndarray], tokens: Tensor, mask: Tensor
                ) -> tuple[dict[str, Any], int]:
        """Left-padded prompts with the responses appended -> ``(inputs, prompt length)``."""
        inputs = self.lm.encode_prompts(prompts, frames)
        n_prompt = inputs["input_ids"].shape[1]
        shape = inputs["input_ids"].shape
        tails = {"input_ids": tokens, "attention_mask": mask}
        for key, value in list(inputs.items()):  # e.g. mm_token_type_ids: 0 on text tokens
            if torch.is_tensor(value) and value.shape == shape:
                tail = tails.get(key, torch.zeros_like(tokens))
                inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
        return inputs, n_prompt

    def _logits(self, inputs: dict[str, Any], n_prompt: int, t_len: int, reference: bool = False
                ) -> Tensor:
        """Policy (or reference) logits predicting each response token (position ``i - 1``
        predicts token ``i``), divided by the sampling temperature: the distribution the
        responses were drawn from, so the ratio and KL compare like with like."""
        if reference:
            with self.lm.model.disable_adapter():
                out = self.lm.model(**inputs, use_cache=False)
        else:
            out = self.lm.model(**inputs, use_cache=False)
        return out.logits[:, n_prompt - 1:n_prompt - 1 + t_len] / self.cfg.temperature

    def _response_mask(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens up to and including the first EOS -> ``(mask, no_eos)``."""
        is_eos = torch.isin(tokens, torch.tensor(self.eos_ids, device=tokens.device))
        seen_before = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
        mask = seen_before == 0
        return mask, ~is_eos.any(dim=1)

    @torch.no_grad()
    def sample(self, prompts: list[str], frames: list[np.ndarray], seeds: Sequence[int] | None = None
               ) -> tuple[Tensor, list[str]]:
        """Sample responses at the configured temperature -> ``(token ids [B, T], texts)``.

        With ``seeds`` row ``i`` draws from its own stream (:class:`videostar.generation.RowSampler`):
        its response depends on its seed alone, not on the rows sampled beside it, so a step's
        prompts split over several ranks sample what one process samples."""
        inputs = self.lm.encode_prompts(prompts, frames)
        self.lm.model.eval()
        if seeds is None:
            out = self.lm.model.generate(**inputs, generation_config=self.sampling)
        else:
            out = self.lm.model.generate(
                **inputs, generation_config=self.lm.generation_config(0.0, self.cfg.max_new_tokens),
                logits_processor=LogitsProcessorList([RowSampler(seeds, self.cfg.temperature)]))
        tokens = out[:, inputs["input_ids"].shape[1]:]
        texts = self.lm.processor.batch_decode(tokens, skip_special_tokens=True)
        return tokens, [t.strip() for t in texts]

    @torch.no_grad()
    def sampled_tokens(self, prompts: list[str], frames: list[np.ndarray], seeds: Sequence[int] | None = None
                       ) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        """Sampled responses cut at their first EOS -> ``(tokens padded after it, mask, no_eos,
        texts)``."""
        tokens, texts = self.sample(prompts, frames, seeds)
        mask, no_eos = self._response_mask(tokens)
        tokens = torch.where(mask, tokens, torch.full_like(tokens, self.lm.pad_token_id))
        return tokens, mask, no_eos, texts

    # -- checkpoints

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        """What a checkpoint holds of the models: the policy's adapter."""
        return {f"policy.{k}": p for k, p in trainable(self.lm.model).items()}

    def save(self, checkpoints: Checkpoints) -> Path:
        """A checkpoint of this step: the trainable weights, optimizer, RNG and history."""
        return checkpoints.save(self.step_count, self.trainable(), self.optimizer, None,
                                {"history": self.history})

    def resume(self, checkpoints: Checkpoints) -> int | None:
        """Continue from the newest checkpoint that reads back; returns its step (None: none)."""
        def load(path: Path) -> dict[str, Any]:
            meta = checkpoints.load(path, self.trainable(), self.optimizer, None)
            with restoring(path):
                return {"step": int(meta["step"]), "history": list(meta["history"])}

        meta = checkpoints.resume(load)
        if meta is None:
            return None
        self.step_count, self.history = meta["step"], meta["history"]
        return self.step_count


def run_steps(trainer: PolicyTrainer, checkpoints: Checkpoints, steps: int,
              step: Callable[[int], dict[str, float]], first: dict[str, float], saved: int | None,
              desc: str, on_step: Callable[[dict[str, float]], None] | None = None,
              progress: bool = True) -> None:
    """Run ``step(k)`` from the trainer's step to ``steps``, with a progress bar: ``first`` is
    added to step 0's statistics (the held-out reward before), every step's go to ``on_step``,
    a checkpoint is saved when due and after the last step (``saved``: the step whose checkpoint
    is on disk already), so a kill in the held-out pass that follows loses no step."""
    bar = tqdm(total=steps, initial=trainer.step_count, desc=desc, unit="step", disable=not progress)
    while trainer.step_count < steps:
        k = trainer.step_count
        record = step(k)
        if k == 0:
            record.update(first)
        if on_step is not None:
            on_step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
        if checkpoints.due(trainer.step_count, steps):
            trainer.save(checkpoints)
            saved = trainer.step_count
    bar.close()
    if saved != trainer.step_count:
        trainer.save(checkpoints)


def start_policy(
    sft_model: str, train: list[Record], heldout: list[Record], model_out: Path, video: VideoConfig,
    lora: LoraConfig, seed: int, adapter_base: str | None, quantize: str | None, algorithm: str,
) -> tuple[LoadedModel, Decoded, Decoded, list[dict[str, str]]]:
    """What every RL run starts from: ``model_out`` not yet written, the prompts' videos decoded
    (an unreadable one is skipped and reported), the seeds set, and ``sft_model`` folded with a
    fresh LoRA adapter on top -> ``(policy, (train, frames), (heldout, frames), skipped)``."""
    if model_out.exists():
        raise VideostarError(f"{model_out}: already exists; refusing to overwrite a saved model")
    skipped: list[dict[str, str]] = []
    decoded_train = decode_batch(train, video, skipped)
    decoded_heldout = decode_batch(heldout, video, skipped)
    if not decoded_train[0]:
        raise VideostarError(f"no readable training prompts for {algorithm}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    policy = load_model(sft_model, adapter_base=adapter_base, quantize=quantize, fold=True)
    policy.tuned_from = sft_model  # the RL adapter sits on exactly this model
    return add_lora(policy, lora), decoded_train, decoded_heldout, skipped


def run_metrics(trainer: PolicyTrainer, prompts: int, heldout: int, before: float, after: float,
                resumed: int | None, skipped: list[dict[str, str]], started: float) -> dict[str, Any]:
    """The numbers every RL run reports: its steps and prompts, the held-out reward before and
    after (the measure of whether it helped), the last KL and reward, what it resumed from."""
    return {
        "steps": trainer.step_count,
        "prompts": prompts,
        "heldout_prompts": heldout,
        "heldout_reward_before": before,
        "heldout_reward_after": after,
        "reward_gain": after - before,
        "final_kl": trainer.history[-1]["kl"],
        "mean_reward_last": float(np.mean([h["reward"] for h in trainer.history[-5:]])),
        "resumed_from": resumed,
        "video_errors": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
