"""routerd: a self-hosted LLM gateway. The package version lives here."""

__version__ = "0.1.0"
