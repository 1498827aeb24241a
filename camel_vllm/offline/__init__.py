"""Offline tools over request logs: workload energy and runtime models (Wilkins et al.), their
fit, warm-starting a policy from them, and planning which device serves which requests."""
