"""Training: instruction tuning (SFT); reward modelling and PPO join with the RLAIF stage."""
