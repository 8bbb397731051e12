"""Benchmarks: runnable modules that measure, print a small table and write JSON.

They are not tests -- figures depend on the machine -- so nothing here asserts a wall-clock limit.
"""
