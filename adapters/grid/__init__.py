"""Grid sources: live carbon-intensity APIs (WattTime v3, Electricity Maps, UK Carbon Intensity).

Each module implements :class:`greenroute.ports.GridSource` and exposes ``from_settings`` for the
``greenroute.grid_sources`` entry point; ``_http`` holds their shared HTTP client, retries and settings plumbing.
"""
