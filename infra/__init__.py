"""See docs/architecture.md for what this folder holds."""
