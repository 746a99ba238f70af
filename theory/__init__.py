"""Theory: capacities, theorem conditions, drifts and exact checks.

Exact numbers are :class:`fractions.Fraction` (:mod:`~llmstab.theory.exact_linalg`
is the one way in); sympy does the symbolic work (derivations, theorem
conditions) and is imported only where that work is done, so a check that
needs none of it never loads sympy. Depends on nothing else in the toolkit.
"""
