"""What the server and every client agree on: protocol, endpoints, request client."""

__version__ = "0.1.0"
