"""Recovery-oriented operation (the paper's §5, Principles 4-6), on every machine.

- `crash`: the crash record a daemon writes before it rolls (what it was doing: the
  component, the serial, a summary of the request or query, the exception).
- `policy` (pure): when a daemon that keeps rolling goes to long-sleep, and for how long.
- `roll`: the shell every daemon runs under: the start gate (sleep if the policy says so,
  telling the centers; report the last run's crash), `Faults` (an unexpected error in a
  request: roll, or, while the network is in its in-place mode, fail that one request and
  disable the serial that faults), the stalled-loop watchdog.
- `inject` (labs and tests only): customers' `faults` that crash, hang or answer wrongly.
- `bundle`: signed release bundles (customer or system configuration, software version)
  and how a machine applies one; `follow`: a machine follows the leader's release order.

The network-wide decisions (in-place mode, quarantine, the phases of a release) are the
mapping centers' (`mapping.faults`, `mapping.rollout`).
"""
