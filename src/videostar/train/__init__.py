"""Training: instruction tuning (SFT), and the RLAIF pieces (preferences, reward model, PPO)."""
