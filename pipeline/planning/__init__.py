"""Planning before training: peak memory per device and token counts with a time estimate."""
