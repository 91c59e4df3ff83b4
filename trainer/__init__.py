"""The training side of the loop: dataset builder, LoRA training, offline gate, registry.

Heavy dependencies (torch, transformers, peft) are imported only by the modules
that need them (``lora``, ``gate``, ``base_model``, ``cycle``), so the dataset
builder and the registry stay importable without the ``train`` extra.
"""
