"""Inference: generation (batched, streamed), the terminal chat and the OpenAI-compatible server."""
