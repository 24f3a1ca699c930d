"""Training: what SFT, the reward model and the RL trainers share.

The one training loop (``loop.py``; its DeepSpeed engine in ``engine.py``), its pieces (rank
awareness, the resumable checkpoint format) and how a training step runs past one process
(torchrun, a Kubeflow Trainer ``TrainJob``).
"""
