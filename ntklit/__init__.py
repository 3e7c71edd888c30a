"""ntklit: helpers for the book on the NTK of deep networks with orthogonal vs Gaussian init.

Importing the package applies :mod:`ntklit.compat`, which makes neural-tangents 0.6.5 work on
current JAX without tensorflow (neural-tangents itself is installed with
``pip install --no-deps neural-tangents==0.6.5``; without it ``import ntklit`` raises an
``ImportError`` that says so), and limits OpenBLAS to one thread (``ntklit._threads``:
jaxlib's CPU LAPACK kernels stall when its threads compete with XLA's). Submodules are
imported on demand::

    from ntklit import init, nets, kernels, empirical
"""

import importlib.util as _ilu

NT_INSTALL_COMMAND = "pip install --no-deps neural-tangents==0.6.5"

if _ilu.find_spec("neural_tangents") is None:
    raise ImportError(
        "ntklit needs neural-tangents 0.6.5, which is not installed. It cannot be a declared "
        "dependency (its metadata requires tensorflow, which ntklit never installs); install "
        f"it without its dependencies:\n    {NT_INSTALL_COMMAND}",
        name="neural_tangents",
    )

from . import _threads  # noqa: E402
from . import compat as _compat  # noqa: E402

_compat.apply()
_threads.limit_blas_threads()

__version__ = "0.1.0"
