"""Evaluation: perplexity, embedding similarity, and the report."""
