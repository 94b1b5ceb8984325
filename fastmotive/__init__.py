"""fastmotive: motivation-aware training (Acheli & Gaaloul, "Motivation is Something You Need", arXiv 2602.21064)
on one flat arena, with a compiled weights map and a fused single-launch switch."""
from .errors import ArchSpecError, ArenaError, FastmotiveError, WeightsMapError
from .families import list_families, parse_arch
from .pair import MotivatedPair
from .weights_map import MapEntry, WeightsMap

__all__ = ["ArchSpecError", "ArenaError", "FastmotiveError", "WeightsMapError", "list_families", "parse_arch",
           "MotivatedPair", "MapEntry", "WeightsMap"]
__version__ = "0.1.0"
