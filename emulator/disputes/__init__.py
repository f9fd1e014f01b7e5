"""Disputes, early fraud warnings and Radar value lists."""
