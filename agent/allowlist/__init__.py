"""The signed allow-list: its compact store, manifests, local repository, MQTT sync and freeze policy."""
