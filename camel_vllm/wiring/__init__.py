"""Builds a ready controller from a configuration (:mod:`.build`): the one place that knows
devices, policies, the controller, the state store and the listeners together."""
