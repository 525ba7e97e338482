"""The core layer: what a batch is and how log-probs, losses and the reference are computed from it, with the
generation, statistics, records and small utilities every layer above shares. It imports no other layer."""
