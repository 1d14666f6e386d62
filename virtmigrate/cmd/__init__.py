"""Thin mains: parse flags, wire components, run, return an exit code."""
