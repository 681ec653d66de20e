"""Pytest fixtures for the XAPI simulator (filled in by the XCP-ng work)."""
