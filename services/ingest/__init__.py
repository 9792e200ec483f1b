"""Ingest: the entry point of the tape. Source adapters publish here; valid items go to `news.raw` once."""
