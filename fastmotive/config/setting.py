"""`Setting`: everything about one training setting besides its name and type (the flag's help and group, the
value check, whether args.yaml keeps it), attached to its `TrainConfig` field by `setting(...)`."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str                          # attribute of TrainConfig; the flag is --name-with-dashes
    default: Any
    help: str
    type: Callable | None = None       # argparse type; None: a store_true switch (default False)
    group: str = "optimization"        # the --help section
    short: str | None = None           # a one-letter alias such as -b
    choices: tuple | None = None
    saved: bool = True                 # a resumed run takes it from its args.yaml, and a clashing flag is refused
    kept: bool = False                 # saved=False but shapes the run's outputs: a resumed run keeps the
                                       # recorded value unless the flag is given again (logs, checkpoints)
    evaluation_only: bool = False      # changes what is measured, not what is trained: a finished run is
                                       # re-evaluated with a new value rather than refused or retrained
    check: Callable[[Any], bool] | None = None   # valid values (None passes always); `expect` says what they are
    expect: str = ""
    nargs: str | int | None = None     # "?" with `const`: a flag that may stand alone (--compile); 2: MIN MAX
    const: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(default, help: str, type: Callable | None = None, group: str = "optimization", **options):
    """A `TrainConfig` field whose metadata carries its `Setting` (named after the field when the class is made)."""
    return dataclasses.field(default=default, metadata={"setting": Setting("", default, help, type, group, **options)})


def settings_of(config_class) -> tuple[Setting, ...]:
    """The `Setting` of every field of `config_class`, in field order, each with its field's name."""
    return tuple(dataclasses.replace(f.metadata["setting"], name=f.name) for f in dataclasses.fields(config_class))
