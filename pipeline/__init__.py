"""Fine-tune causal language models with LoRA, QLoRA, DoRA or full fine-tuning on the Hugging Face stack."""

__version__ = "0.1.0"
