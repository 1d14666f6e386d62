"""The embedded local cluster: a real control plane (and, later, nodes) on one machine."""
