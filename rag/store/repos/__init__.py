"""The catalog's repositories, one job each, over the shared ``Database`` (rag.store.db)."""
