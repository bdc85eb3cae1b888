"""HTTP and WebSocket routes: I/O plumbing over the framework-free cores."""
