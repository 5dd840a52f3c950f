"""Interop with other tools' formats: pytest-benchmark JSON (import / export) and Parquet export."""
