"""Data shipped with Spillover: example and demo configs (no code lives here)."""
