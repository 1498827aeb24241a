"""Policies: choose an arm in a context, learn from costs. :mod:`.base` is the protocol and
the base class, :mod:`.registry` builds the one a configuration names."""
