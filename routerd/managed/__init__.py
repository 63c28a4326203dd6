"""Managed state: the files in `state_dir` that routerd itself writes (admin API and CLI)."""
