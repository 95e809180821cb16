"""Run folders as typed records: manifest, metrics and the live event log, read through RunRecord."""
