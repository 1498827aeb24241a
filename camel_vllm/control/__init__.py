"""The engine-agnostic controller (chooses, applies and credits arms) and the store that
keeps a policy's learned state between runs."""
