"""What the controller reports: Prometheus metrics (:mod:`.metrics`) and the per-request
JSONL log (:mod:`.reqlog`). Both are controller listeners."""
