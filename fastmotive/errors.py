"""Every exception fastmotive raises on bad input or a failed run; each message names the culprit and the fix."""


class FastmotiveError(Exception):
    """Base class of every error fastmotive raises on user input."""


class ArchSpecError(FastmotiveError, ValueError):
    """An arch spec (``efficientnet_b0:b2``) is malformed or names an unknown family or member."""


class WeightsMapError(FastmotiveError, ValueError):
    """A base model does not nest inside its motivated model; lists every tensor at fault."""


class ArenaError(FastmotiveError, RuntimeError):
    """A tensor left the flat arena (re-allocated, re-assigned, cast) or models disagree on device/dtype."""


class ConfigError(FastmotiveError, ValueError):
    """Command-line or config settings contradict each other or the run being resumed."""


class CheckpointError(FastmotiveError, RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another run."""


class DataError(FastmotiveError, ValueError):
    """A dataset is missing, damaged or laid out differently from what its reader expects (names the file)."""


class ExperimentError(FastmotiveError, ValueError):
    """A comparison or tune-k cannot run as asked (clashing flags, a run made with other settings, ...)."""


class TrainingDivergedError(FastmotiveError, FloatingPointError):
    """The loss or the weights became NaN or inf; the last good checkpoint is kept."""


class DistributedError(FastmotiveError, RuntimeError):
    """Processes of a multi-process run disagree (step, active model, weights) or a peer died or hung; names the
    step and the ranks."""
