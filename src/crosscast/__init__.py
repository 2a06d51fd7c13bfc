"""crosscast: relay UDP broadcast and multicast across isolated network segments."""

__version__ = "0.1.0"
