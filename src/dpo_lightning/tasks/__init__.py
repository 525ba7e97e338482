"""Tasks: what the entry points run (train, evaluate, the online loop, the auto judge's training). The one layer
that composes and runs whole configs."""
