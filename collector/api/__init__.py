"""The HTTP API and web view (`collector api`): what billing systems and integrators pull,
and the pages operators look at. It reads and writes through the stores like the CLI."""
