"""virtmigrate: live migration of virtual machines between Kubernetes nodes."""

__version__ = "0.1.0"
