"""lmrec serving runtime: numpy only (no torch), shared by every Lambda function."""

__version__ = "0.1.0"
