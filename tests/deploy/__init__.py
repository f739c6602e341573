"""Tests of the deployment pieces: the native stack (deploy/native/), the lock files, and the
Kubernetes manifests (deploy/kubernetes/)."""
