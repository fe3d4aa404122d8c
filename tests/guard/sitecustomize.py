"""Loaded by Python at start-up in CLI subprocesses of the tests (via PYTHONPATH)."""

from deletion_guard import install_from_environment

install_from_environment()
