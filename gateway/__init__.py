"""Spillover gateway: the proxy and its request path."""
