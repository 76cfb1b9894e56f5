"""Resource classes: each holds a reference to the client and nothing else."""
