"""HTML / Markdown reports rendered from a run directory."""
