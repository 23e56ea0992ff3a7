"""Shared grid caches (Redis, Valkey): grid values, fetch claims and rate budgets shared by a fleet.

Each module implements :class:`greenroute.ports.SharedGridCache`, found by URL scheme via ``greenroute.caches``.
"""
