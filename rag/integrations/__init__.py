"""Adapters for other ecosystems (LangChain); each imports its framework only when used."""
