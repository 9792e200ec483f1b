"""The analysis service: from a new story to a bounded, explained trading signal."""
