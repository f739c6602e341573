"""Deployment files; ``deploy.native`` is the stack run on this machine without containers."""
