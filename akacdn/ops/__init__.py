"""Operator commands that talk to the mapping centers: `akacdn status`, `akacdn suspend`,
`akacdn resume` (the centers' side is `mapping.operator`)."""
