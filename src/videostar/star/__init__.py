"""The Video-STaR steps: generate, verify, rationalize, and the cycle decision."""
