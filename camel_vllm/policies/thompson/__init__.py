"""``camel-ts`` and ``ts``: contextual Gaussian Thompson sampling on request costs, with
normal-inverse-gamma posteriors (:mod:`.nig`)."""
