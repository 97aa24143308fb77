"""Ray as the distributed engine: data-parallel counting (spectra, confusion matrices) and seed-parallel
synthesis on a pool of Ray actors. Ray itself is imported only when a run asks for it (``ray=``)."""
from .options import RayOptions

__all__ = ["RayOptions"]
