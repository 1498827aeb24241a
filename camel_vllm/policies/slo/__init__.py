"""``slo``: SLO-aware frequency scaling after throttLL'eM (:mod:`.policy`) and the one SLO
filter every policy with an SLO uses (:mod:`.filter`)."""
