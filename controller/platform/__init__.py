"""The platform boundary: adapter protocol, typed errors, and the embedded simulator."""
