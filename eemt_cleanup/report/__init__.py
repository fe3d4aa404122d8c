"""Rendering: JSON, Rich tables and progress, plain log lines, the log file."""
