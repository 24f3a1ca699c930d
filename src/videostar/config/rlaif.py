"""The VLM-RLAIF stage's settings: preferences, reward model, PPO or GRPO (defaults: the
released VLM-RLAIF settings where the paper gives them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from videostar.config.fields import at_least, fraction, non_negative, positive, require
from videostar.config.recipe import LoraConfig


@dataclass
class RewardModelConfig:
    """Reward-model training on the preference pairs; ``heldout_fraction`` of the videos is kept
    out to measure pairwise accuracy."""

    lr: float = 2e-5
    epochs: float = 1.0
    batch_size: int = 4
    heldout_fraction: float = 0.1
    center_coef: float = 1e-3
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_steps: int = 50
    """A resumable checkpoint every this many optimizer steps (0: none)."""
    likelihood_weight: float = 0.0
    """Adds SimPO's implicit reward to the head's: this times the mean log-probability that the
    reward model's own language model (the SFT model with the reward adapter) gives the
    response's tokens; Bradley-Terry training then tunes both. 0 (the released recipe): the head
    alone. A small model's head learns the pairs' videos rather than what makes an answer right,
    while its language model already ties answer words to the video."""
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, where: str) -> None:
        at_least(where, "checkpoint_steps", self.checkpoint_steps, 0)
        non_negative(where, "likelihood_weight", self.likelihood_weight)
        require(where, "heldout_fraction", 0 < self.heldout_fraction < 1, "a number in (0, 1)")
        at_least(where, "batch_size", self.batch_size, 1)
        positive(where, "lr", self.lr)
        positive(where, "epochs", self.epochs)
        non_negative(where, "center_coef", self.center_coef)
        fraction(where, "warmup_ratio", self.warmup_ratio, closed_top=False)
        positive(where, "max_grad_norm", self.max_grad_norm)
        at_least(where, "seed", self.seed, 0)



@dataclass
class PPOConfig:
    """PPO knobs; defaults are the released VLM-RLAIF settings where the paper gives them.

    ``steps`` rollouts of ``batch_size`` prompts each, ``ppo_epochs`` passes of minibatch updates
    over every rollout; a checkpoint every ``save_every`` steps (0: only at the end), of which
    the newest ``keep_checkpoints`` are kept.
    """

    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-5
    kl_coef: float = 0.1
    """The per-token KL penalty's coefficient (the paper's 0.1, fixed); with ``kl_target`` its
    starting value."""
    kl_target: float | None = None
    """Adapt ``kl_coef`` towards this KL per response (nats, summed over its tokens): Ziegler et
    al.'s proportional controller, as TRL's ``AdaptiveKLController`` (null: the coefficient stays fixed)."""
    kl_horizon: int = 10000
    """The controller's horizon in sampled responses: the coefficient moves by at most 20 %
    per this many (Ziegler et al.: 10000)."""
    kl_budget: float | None = None
    """The KL per response the run must end within: ``metrics.json`` says whether its final KL
    (the mean of the last 5 steps) is (``kl_within_budget``); null: no budget."""
    gamma: float = 1.0
    lam: float = 1.0
    clip: float = 0.2
    value_clip: float = 0.2
    value_coef: float = 0.1
    ppo_epochs: int = 2
    minibatch_size: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 256
    eos_penalty: float = 1.0
    length_penalty: float = 0.0
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    save_every: int = 0
    keep_checkpoints: int = 2
    heldout_samples: int = 2
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, where: str) -> None:
        at_least(where, "steps", self.steps, 1)
        at_least(where, "batch_size", self.batch_size, 1)
        at_least(where, "minibatch_size", self.minibatch_size, 1)
        require(where, "minibatch_size", self.minibatch_size <= self.batch_size,
                f"at most batch_size ({self.batch_size})")
        positive(where, "temperature", self.temperature)
        positive(where, "lr", self.lr)
        non_negative(where, "kl_coef", self.kl_coef)
        if self.kl_target is not None:
            positive(where, "kl_target", self.kl_target)
            require(where, "kl_coef", self.kl_coef > 0,
                    "> 0 when kl_target is set (the controller scales it: 0 would stay 0)")
        at_least(where, "kl_horizon", self.kl_horizon, 1)
        if self.kl_budget is not None:
            positive(where, "kl_budget", self.kl_budget)
        fraction(where, "gamma", self.gamma)
        fraction(where, "lam", self.lam)
        positive(where, "clip", self.clip)
        positive(where, "value_clip", self.value_clip)
        non_negative(where, "value_coef", self.value_coef)
        at_least(where, "ppo_epochs", self.ppo_epochs, 1)
        at_least(where, "max_new_tokens", self.max_new_tokens, 1)
        non_negative(where, "eos_penalty", self.eos_penalty)
        non_negative(where, "length_penalty", self.length_penalty)
        positive(where, "max_grad_norm", self.max_grad_norm)
        at_least(where, "save_every", self.save_every, 0)
        at_least(where, "keep_checkpoints", self.keep_checkpoints, 1)
        at_least(where, "heldout_samples", self.heldout_samples, 1)
        at_least(where, "seed", self.seed, 0)



@dataclass
class GRPOConfig:
    """GRPO knobs (the RL step beside PPO, ``rlaif.algorithm: grpo``): the Parser-Verifier is
    the reward, there is no value model.

    ``steps`` rollouts of ``batch_size`` prompts, each sampled ``group_size`` times; ``epochs``
    passes of minibatch updates (``minibatch_size`` responses each) over every rollout;
    checkpoints as PPO's.
    """

    steps: int = 100
    batch_size: int = 8
    group_size: int = 8
    """Responses sampled per prompt: their mean reward is each one's baseline. A group whose
    responses all pass (or all fail) teaches nothing, so the group must be large enough for the
    model's pass rate to vary within it."""
    lr: float = 1e-5
    kl_coef: float = 0.04
    """Weight of the k3 KL estimate to the reference (the SFT model) in the loss (DeepSeekMath's
    0.04); 0: no KL term (the reference's logprobs are still computed for the reported KL)."""
    clip: float = 0.2
    epochs: int = 1
    """Passes over each rollout; with 1 and one minibatch the ratio is 1 and clipping never acts."""
    minibatch_size: int = 16
    temperature: float = 1.0
    max_new_tokens: int = 256
    eps: float = 1e-4
    """Added to the group's reward std before dividing, so a group of near-equal rewards does
    not blow its advantages up."""
    reward_model_weight: float = 0.0
    """Adds this times the reward model's score to the verifier's 0/1 reward; 0: the verifier
    alone, and no reward model is loaded."""
    max_grad_norm: float = 1.0
    save_every: int = 0
    keep_checkpoints: int = 2
    heldout_samples: int = 2
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, where: str) -> None:
        at_least(where, "steps", self.steps, 1)
        at_least(where, "batch_size", self.batch_size, 1)
        at_least(where, "group_size", self.group_size, 2)
        at_least(where, "minibatch_size", self.minibatch_size, 1)
        require(where, "minibatch_size", self.minibatch_size <= self.batch_size * self.group_size,
                f"at most batch_size x group_size ({self.batch_size * self.group_size})")
        positive(where, "lr", self.lr)
        non_negative(where, "kl_coef", self.kl_coef)
        positive(where, "clip", self.clip)
        at_least(where, "epochs", self.epochs, 1)
        positive(where, "temperature", self.temperature)
        at_least(where, "max_new_tokens", self.max_new_tokens, 1)
        positive(where, "eps", self.eps)
        non_negative(where, "reward_model_weight", self.reward_model_weight)
        positive(where, "max_grad_norm", self.max_grad_norm)
        at_least(where, "save_every", self.save_every, 0)
        at_least(where, "keep_checkpoints", self.keep_checkpoints, 1)
        at_least(where, "heldout_samples", self.heldout_samples, 1)
        at_least(where, "seed", self.seed, 0)


@dataclass
class RLAIFConfig:
    """The VLM-RLAIF stage after the cycles: preferences, reward model, PPO.

    ``judge`` is ``sft`` (the SFT model judges its own samples, the paper's recipe), a model
    folder or ``s3://`` URI, or ``labels`` (the Parser-Verifier prefers the sample that holds the
    record's labels; for models too small to judge). ``sft_model`` is the starting point of a
    stand-alone RLAIF pipeline; the two responses per prompt are sampled at ``temperature``;
    ``quantize: 4bit`` loads the frozen bases 4-bit (QLoRA, GPU only).
    """

    enabled: bool = False
    sft_model: str = ""
    prompts: int | None = None
    tasks: list[str] = field(default_factory=list)
    """Only records of these tasks become prompts (empty: all): where the judge's pairs say
    something the reward model can learn."""
    num_clips: int = 3
    frames_per_clip: int = 8
    temperature: float = 1.0
    pairs_per_prompt: int = 1
    """Independent response pairs sampled and judged per prompt (the paper: 1); more pairs from
    the same prompts when prompts are few or the judge keeps few of them."""
    judge: str = "sft"
    quantize: str | None = None
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    algorithm: str = "ppo"
    """The RL step after the reward model: ``ppo`` (the paper's: against the reward model) or
    ``grpo`` (the Parser-Verifier's reward, ``rlaif.grpo``; the reward model is still trained,
    its held-out accuracy reported, and mixed in when ``grpo.reward_model_weight`` > 0)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)

    def validate(self, where: str) -> None:
        at_least(where, "prompts", self.prompts, 1, optional=True)
        at_least(where, "num_clips", self.num_clips, 1)
        require(where, "frames_per_clip", 1 <= self.frames_per_clip <= 20, "an integer from 1 to 20")
        at_least(where, "pairs_per_prompt", self.pairs_per_prompt, 1)
        require(where, "judge", bool(self.judge), "sft, labels, or a model path/URI")
        require(where, "quantize", self.quantize in (None, "4bit"), "null or 4bit")
        require(where, "algorithm", self.algorithm in ("ppo", "grpo"), "ppo or grpo")
        positive(where, "temperature", self.temperature)



