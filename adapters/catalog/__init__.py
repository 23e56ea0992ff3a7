"""Catalogs: where every object is, and the carbon ledger (SQLite embedded, server databases for fleets).

Each module implements :class:`greenroute.ports.Catalog` and exposes ``from_url`` for the
``greenroute.catalogs`` entry point, keyed by URL scheme.
"""
