"""Sources: where documents come from (files, records, SQL tables, object storage).

Discovery lists each source's items with a change token and diffs them against the
`documents` manifest; reading an item hands its bytes to `kbflow.tasks.formats`.
"""
