"""devnet: the whole network on one machine, every daemon its own process on loopback."""
