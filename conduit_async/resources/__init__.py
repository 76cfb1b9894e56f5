"""Resource classes: thin views over `Conduit.request` and the routes they call."""
