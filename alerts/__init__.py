"""Scaling-health alert rules, evaluation and notification."""
