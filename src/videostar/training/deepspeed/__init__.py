"""DeepSpeed configurations shipped with the package (``sft.deepspeed: zero2.json``)."""
