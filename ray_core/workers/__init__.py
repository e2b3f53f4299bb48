"""Worker process entry points started by the raylet's worker pool."""
