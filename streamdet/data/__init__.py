"""Data files shipped with the package (AudioSet label names)."""
