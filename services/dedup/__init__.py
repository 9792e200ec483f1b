"""Dedup: turns the raw tape into stories (one story, many echoes), so nothing reaches the LLM twice."""
