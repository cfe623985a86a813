"""Ripple: live recommendations and suggested replies from engagement streams."""

import os

# One BLAS thread per process unless the operator says otherwise.  Ripple's numpy work is many
# small matrix-vector products (one per recommendation); a multi-threaded OpenBLAS spins and
# synchronises its threads for each, and on a 2-core machine shared with the broker that made a
# recommendation 3× slower (3.1 ms against 1.0 ms with a busy core).  Set before numpy is imported
# (every ``ripple`` entry point imports this package first, as do the benches that rank);
# onnxruntime has its own thread pool.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
