"""The ``greenroute://`` front door: an fsspec (async) filesystem over :class:`greenroute.GreenRouter`.

It holds no placement policy of its own: it maps fsspec calls onto the router (``filesystem``) and
wraps the router's streams as fsspec file objects (``files``). Registered by the ``fsspec.specs`` entry point.
"""
