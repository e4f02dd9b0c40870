"""The vault: secrets at rest, envelope-encrypted under the master key."""
