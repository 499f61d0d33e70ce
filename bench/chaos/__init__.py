"""The real-process chaos soak (issue 14): ``python -m bench.chaos``; see ``__main__``."""
