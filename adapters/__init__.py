"""greenroute's adapters: one module per outside system (grid APIs, storage targets, catalogs).

Adapters import the core; the core never imports an adapter at import time. Configuration loads
them by name through entry points.
"""
