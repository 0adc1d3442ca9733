"""Preparation: raw videos -> the layouts the loaders read (``videos``, ``mmbalance prepare``)
and the imbalance suite written from real tools (``generate``)."""
