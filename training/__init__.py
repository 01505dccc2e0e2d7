"""lmrec training: the SageMaker-style container that trains, evaluates and exports models."""
