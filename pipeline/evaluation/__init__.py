"""Evaluation: perplexity, answer similarity, lexical overlap, safety, the regression gate and the report."""
