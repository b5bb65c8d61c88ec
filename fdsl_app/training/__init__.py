"""Training: a run's fit and evaluation, its run directory, its callbacks and the Lightning internals they need."""
