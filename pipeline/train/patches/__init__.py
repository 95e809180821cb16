"""The only place that touches private names of trl, transformers, peft, bitsandbytes or torch; each patch reports whether it is active."""
