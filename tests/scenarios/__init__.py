"""Scaling-health scenarios on the native stack (deploy/native/stack.py)."""
