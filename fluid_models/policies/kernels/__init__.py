"""The policies' compiled batch-forming kernels, one module per policy, and the building blocks they share.

Importing any of these modules imports numba; a policy class reaches its
kernel through :class:`~llmstab.fluid_models.policies.base.KernelRef`, so a
check that never forms a batch never loads them.
"""
