"""Device backends behind one protocol (:mod:`.base`): Jetson sysfs, NVML, jetson-stats, the
emulator (:mod:`.emulator`) and none; :mod:`.registry` opens the one a configuration names."""
