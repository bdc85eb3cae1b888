"""gateway: a login gateway with a provider-checked real-time chat."""

__version__ = "0.1.0"
