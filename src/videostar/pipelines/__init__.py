"""Kubeflow Pipelines: the step components and the cyclic self-training pipeline."""
