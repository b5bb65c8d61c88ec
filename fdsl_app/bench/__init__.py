"""The benchmarks behind ``fdsl_app bench``: the renderer against its numpy restatement (render.py), and data
pipelines against PNG, WebDataset, FFCV and DALI (loaders.py with records, steps, pipelines, peers, report). A leaf:
only the command line's bench verbs import it."""
