"""Reporting: what a finished run or grid shows (post-hoc probes, statistics over seeds,
the imbalance certificate)."""
