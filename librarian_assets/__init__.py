"""The Dagster code location: ops, the ``ingest_url`` job, partitions, the watchlist sensor.

``workspace.yaml`` loads :mod:`librarian_assets.definitions`; importing this package itself stays
cheap so the pipeline functions can be used (and benchmarked) without building definitions.
"""
