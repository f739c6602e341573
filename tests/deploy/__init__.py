"""Tests of the native stack's pieces (deploy/native/)."""
