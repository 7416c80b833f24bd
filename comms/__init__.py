"""comms: stakeholder communications and engagement from files."""

__version__ = "0.1.0"
