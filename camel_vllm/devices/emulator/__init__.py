"""``device: emulated``: a calibrated Jetson AGX Orin in software. :mod:`.profiles` loads the
device and model profiles, :mod:`.device` is the device the controller drives."""
