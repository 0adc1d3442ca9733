"""Dataset adapters: each reads one layout the field uses (``docs/datasets.md``) into
:class:`mmbalance.data.DataSplits`. Registered by name in ``mmbalance.data.registry``."""
