"""Training: what SFT, the reward model and the RL trainers share.

The loop's pieces (rank awareness, the resumable checkpoint format, per-token loss weights) and
how a training step runs past one process (torchrun, a Kubeflow Trainer ``TrainJob``).
"""
