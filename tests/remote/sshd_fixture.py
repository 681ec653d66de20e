"""Pytest fixtures for a real OpenSSH server on loopback (filled in by the SSH work)."""
