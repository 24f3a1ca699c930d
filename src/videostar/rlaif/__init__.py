"""VLM-RLAIF: context-aware preferences, the reward model and PPO against it."""
