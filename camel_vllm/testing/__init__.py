"""Test helpers that need a real vLLM: the vLLM scheduler conformance suite (:mod:`.vllm_conformance`)."""
