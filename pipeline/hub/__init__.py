"""The Hugging Face Hub: push a run with its model card."""
