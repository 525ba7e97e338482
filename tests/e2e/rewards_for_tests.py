"""A user's own reward function, named by `_target_` in the tests' judge config (`judge.functions`)."""


def shorter(prompts, completions, **columns):
    """Prefers the shorter completion (its words, a hundredth each): varied scores from a model that never answers."""
    return [-len(c.split()) / 100 for c in completions]
