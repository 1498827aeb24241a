"""``camel``: the model-based policy. It learns the board per iteration (time and energy
versus clock and work), projects what each arm does to the queue, and corrects itself from
finished requests. Reading order: board, workload, projection, correction, policy."""

from camel_vllm.policies.model_based.policy import ModelBasedPolicy, ModelParams

__all__ = ["ModelBasedPolicy", "ModelParams"]
