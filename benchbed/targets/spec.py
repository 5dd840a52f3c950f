"""What every target spec model shares; below both the config schema and the kind modules (no import circle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
VARIANT_SEP = "@"  # `box@runsc`: the target `box` on the runtime `runsc` (see TargetBase.variants)


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
