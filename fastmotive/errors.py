"""Exceptions raised on bad input. Each message names the culprit, the expectation and the fix."""


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
