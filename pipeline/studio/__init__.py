"""The studio: a local web app over the same code the CLI runs (recipes, data, runs, chat, shipping)."""
