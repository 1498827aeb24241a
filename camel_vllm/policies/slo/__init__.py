"""``slo``: SLO-aware frequency scaling after throttLL'eM (:mod:`.policy`) on an online
iteration-time model (:mod:`.step_time`)."""
