"""Hardware abstraction: device drivers and the sans-IO wire-protocol codecs they share with simulators."""
