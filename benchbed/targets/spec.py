"""What every target spec model shares; below both the config schema and the kind modules (no import circle)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
VARIANT_SEP = "@"  # `box@runsc`: the target `box` on the runtime `runsc` (see TargetBase.variants)
REDACTED = "<redacted>"
SECRET_KEY = re.compile(r"password|passphrase|secret|token|credential", re.IGNORECASE)


class Strict(BaseModel):
    """Unknown keys are errors, and a loaded file is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetBase(Strict):
    """The keys every kind accepts; a kind's model adds `kind: Literal[...]` and its own keys."""

    if TYPE_CHECKING:  # each kind's model declares `kind: Literal[...]` (last, as users' files show it)
        kind: str
    python: str = Field("python3", description="Python interpreter inside the target that runs the agent")
    scratch_dir: str | None = Field(None, description="Where I/O workloads write; a private temp dir by default")
    description: str = ""

    def variants(self) -> dict[str, TargetBase]:
        """Suffix ▸ spec of the targets this entry stands for: itself alone, unless a kind has an axis
        (a container's `runtime: [runc, runsc]` is `box@runc` and `box@runsc`)."""
        return {"": self}

    def recorded(self) -> dict[str, Any]:
        """The spec as results, reports and logs may show it: an `env` keeps its keys, and its values only for
        the keys in `env_safe`; a field named like a password or token is never shown."""
        data = self.model_dump(mode="json")
        safe = set(data.get("env_safe") or ())
        if isinstance(data.get("env"), dict):
            data["env"] = {k: v if k in safe else REDACTED for k, v in data["env"].items()}
        for key, value in data.items():
            if SECRET_KEY.search(key) and value:
                data[key] = REDACTED
        return data
