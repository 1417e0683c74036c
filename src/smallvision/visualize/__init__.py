"""Pictures of the study: what the convnets learned, how they trained, and how the techniques compare.

Each module builds one kind of figure from plain arrays and networks and returns a matplotlib
`Figure` (pyplot-free, rendered by Agg), so tests can inspect panels and titles; `stage` wires them
to the study's files, `report` puts them on one HTML page.
"""
