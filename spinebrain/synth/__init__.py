"""Synthetic training data: generated spine and brain scans with exact labels."""
