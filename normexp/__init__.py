"""normexp: the normalization layer as the independent variable of the LayerNorm, AdaNorm and RMSNorm papers' experiments.

Layers, each importing only those before it: ``norms`` → ``models`` → ``tasks`` → ``engine`` → ``records`` →
``analysis``; ``cli`` (the only Hydra importer) sits on top. See ``docs/architecture.md``.
"""
__version__ = "0.2.0"
