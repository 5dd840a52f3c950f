"""benchbed: what does this isolation boundary cost my GPU workload?

Kept stdlib-only: this package is also packed into the agent zipapp that runs inside targets.
"""

__version__ = "0.1.0"
