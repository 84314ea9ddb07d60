"""The `spbu` command line: the only part of agent/ that may import simulators/ and hq/."""
