"""podtrail: keeps every pod's life as a PodLifecycleRecord timeline."""

__version__ = "0.1.0"
