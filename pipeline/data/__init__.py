"""Training data: sources -> validated records -> conversations -> token ids and loss masks; hygiene and audit."""
