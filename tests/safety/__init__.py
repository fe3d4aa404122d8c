"""State-safety tests: crash consistency, concurrency with the web interface, signals."""
