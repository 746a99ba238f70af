"""Symbolic theory (sympy): capacities, theorem conditions, drifts, exact checks.

Depends on nothing else in the toolkit.
"""
