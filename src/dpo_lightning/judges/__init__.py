"""Judges: what decides which of two answers to the same prompt is better (a reward model, an LLM asked in both
orders). Every judge answers `compare(prompts, first, second)`; evaluations, the online loop and the blind reading
all go through it."""
