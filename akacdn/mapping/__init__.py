"""Mapping: map structs (the contract with the nameservers), assignment, builder, center."""
