"""full."""
