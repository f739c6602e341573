"""Where telemetry leaves a process."""
