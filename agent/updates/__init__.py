"""Software updates on the station: signed release manifests, releases side by side,
the atomic switch with its health window and rollback, and the update agent."""
