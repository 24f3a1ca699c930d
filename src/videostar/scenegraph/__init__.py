"""STEP: spatio-temporal scene graphs (STSGs) -> multi-step questions whose rationale follows a
path in the graph; verified by the ``graph_path`` verifier and trained through the same cycle."""
