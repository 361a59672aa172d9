"""Reliability: exact exports across faults, kills, leftovers, concurrent writers and late events."""
