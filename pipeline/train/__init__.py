"""Training: the TRL trainer a recipe implies, the speed path, and a run's safety net (resume, guards, checks)."""
