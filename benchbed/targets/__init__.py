"""Targets: isolation boundaries. See base.py for the protocol and the registry."""
