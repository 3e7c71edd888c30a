"""One BLAS thread on the host: applied by ``import ntklit``.

On CPU, jaxlib runs LAPACK (QR, eigh, ... inside ``jit``) through the OpenBLAS libraries that
numpy and scipy ship, from XLA's own worker threads. OpenBLAS' worker threads then compete with
XLA's for the cores and, on a small or shared machine, almost stall: drawing one orthogonal
random-feature map with 2048-column blocks took 34-49 s with OpenBLAS' default threads and
0.36 s with one thread (2 cores, load ~4; ``ntklit.features``), and 48 orthogonal width-256
networks 19-78 s instead of 0.9 s (``ntklit.empirical``). So importing ``ntklit`` limits these
libraries to ``NTKLIT_BLAS_THREADS`` threads (default 1; ``0`` leaves them alone). numpy and
scipy linear algebra on the host is then single-threaded; XLA's own CPU kernels (matmuls,
convolutions) are not affected, nor is anything on a GPU.
"""

from __future__ import annotations

import os

__all__ = ["limit_blas_threads"]


def limit_blas_threads(threads: int | None = None) -> int:
    """Limit the loaded BLAS/LAPACK libraries (OpenBLAS, MKL) to ``threads`` threads.

    Args:
      threads: number of threads; ``None`` reads ``NTKLIT_BLAS_THREADS`` (default 1); ``0``
        changes nothing.

    Returns:
      The limit applied (0: none). Needs ``threadpoolctl`` (a scikit-learn dependency);
      without it only ``OPENBLAS_NUM_THREADS`` is set, for libraries loaded later.

    Raises:
      ValueError: if ``threads`` (or the environment variable) is not an int >= 0.
    """
    if threads is None:
        raw = os.environ.get("NTKLIT_BLAS_THREADS", "1")
        try:
            threads = int(raw)
        except ValueError:
            raise ValueError(f"NTKLIT_BLAS_THREADS must be an int >= 0, got {raw!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    if threads == 0:
        return 0
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))  # libraries loaded later
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return threads
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, which jaxlib's LAPACK calls)

    threadpool_limits(limits=threads, user_api="blas")
    return threads
