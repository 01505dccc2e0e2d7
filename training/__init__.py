"""lmrec training: the SageMaker-style container that trains, evaluates and exports models."""

import os

# OpenMP threads that sleep while they wait, instead of spinning: on a CPU shared with other
# work (two cores, five other processes busy), a teacher step went 0.88 s -> 0.12 s with
# torch's two threads; on an idle machine the difference is within noise. Set before torch
# loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
