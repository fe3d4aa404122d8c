"""eemt-cleanup: a safe, fast, honest janitor for EEMT web-interface job data."""

__version__ = "0.1.0"
