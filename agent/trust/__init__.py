"""Trust: Ed25519 signing, the m-of-n root and its roles, signed documents and commands."""
