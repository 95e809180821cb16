"""Recipes: find a YAML file, apply dotted overrides and validate it into the typed Recipe schema."""
