"""Evaluations (`tapewatch eval NAME`): quality measured on labelled data, printed as JSON."""
