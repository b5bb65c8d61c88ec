"""Fine-tuning suites: a pre-training run and a from-scratch baseline fine-tuned on several datasets and seeds, each
run a normal run directory, and one results table (``fdsl_app suite``).

spec.py reads a suite file (suites/*.yaml) into runs; runner.py runs what is not finished (in subprocesses, one per
device); table.py turns the runs' ``results.json`` into ``results.md`` and ``results.csv``; digits.py writes the CPU
suite's dataset (scikit-learn's digits) as class folders.
"""
