"""End-to-end tests: the station, its broker, headquarters and the simulators together."""
