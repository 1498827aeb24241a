"""``device: jetson``: :mod:`.device` (clock and energy), :mod:`.sysfs` (files, the devfreq node,
the INA3221 rails) and :mod:`.restore` (putting the clock back at exit and after a kill)."""
