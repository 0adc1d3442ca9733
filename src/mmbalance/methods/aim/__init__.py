"""AIM — Adaptive Intra-Network Modulation (arXiv 2508.19769): the method (``method``), its
prototypes (Sec. III-C), the parameter decoupler (Sec. III-D1) and running a block with other
weights (``blocks``). Its equations, as pure functions, are in ``mmbalance.methods.functional``.
"""

from mmbalance.methods.aim.method import AIM, AIMOptions

__all__ = ["AIM", "AIMOptions"]
