"""The in-target runner. Packed with the workloads into ONE zipapp; stdlib-only at import time."""
