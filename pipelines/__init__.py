"""The Kubeflow pipelines: self-training (Video-STaR cycles, then RLAIF), their sub-pipelines,
compile/submit, and the local runner (``kfp.local``)."""
