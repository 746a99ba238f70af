"""llmstab: decide, with checkable evidence, whether an LLM-inference scheduler is stable.

The toolkit's folders install as ``llmstab.theory`` (sympy: exact capacities, theorem
conditions, certificates), ``llmstab.fluid_models`` (batch-time models, workloads, policies,
simulators, networks) and ``llmstab.checkers`` (decision procedures and the CLI).
"""

__version__ = "0.1.0"
