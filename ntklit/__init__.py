"""ntklit: helpers for the book on the NTK of deep networks with orthogonal vs Gaussian init.

Importing the package applies :mod:`ntklit.compat`, which makes neural-tangents 0.6.5 work on
current JAX without tensorflow, and limits OpenBLAS to one thread (``ntklit._threads``:
jaxlib's CPU LAPACK kernels stall when its threads compete with XLA's). Submodules are
imported on demand::

    from ntklit import init, nets, kernels, empirical
"""

from . import _threads
from . import compat as _compat

_compat.apply()
_threads.limit_blas_threads()

__version__ = "0.1.0"
