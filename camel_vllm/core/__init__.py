"""Ground types every layer shares: errors, the configuration, the events an engine adapter
and the controller exchange, arms, contexts and costs. Nothing here imports another
camel_vllm folder."""
