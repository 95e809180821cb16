"""Models: the offline zoo, loading (dtype, quantization), LoRA configs, what a command points at, merging."""
