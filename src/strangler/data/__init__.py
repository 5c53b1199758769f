"""Data parity: prove that the new database holds what the legacy one holds.

`strangler data diff` compares tables by checksum bisection computed inside each database
(engines.py spells rows canonically in SQL, bisect.py is the pure core, diff.py runs it);
gate.py tells which routes may not move to `new` while their tables disagree.
"""
