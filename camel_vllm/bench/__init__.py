"""Benchmarks: ``bench sim`` (:mod:`.sim`) and the robustness matrix (:mod:`.matrix`) on the
simulator, synthetic bandits (:mod:`.bandit`), the live replay against a server
(:mod:`.replay`), their result format (:mod:`.results`), paired differences (:mod:`.paired`)
and plots (:mod:`.plots`)."""
