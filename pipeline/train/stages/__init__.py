"""Training stages (train.stage): a registry record per stage, the shared trainer mixin, the builder."""
