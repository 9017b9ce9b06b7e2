"""Sources' Prefect tasks: discover (each source lists its items through the `Source` protocol of
kbflow.sources), the diff against the `documents` manifest, and the read-and-parse stage that hands
each item's bytes to the format registry (kbflow.tasks.formats). The source kinds themselves, with
their config models, live in the core package kbflow.sources (see its docstring for why).
"""
