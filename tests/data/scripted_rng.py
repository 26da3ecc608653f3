"""A stand-in for numpy.random.Generator that returns scripted draws, to force a transform's
random choices in tests."""


class ScriptedRng:
    """`draws`: ("random", x), ("uniform", x) or ("integers", x) in the order the code draws
    them; each call checks its kind, and integers / uniform check that x is in the range
    asked for. `left` is what was not drawn."""

    def __init__(self, *draws):
        self.left = list(draws)

    def _next(self, kind):
        assert self.left, f"no scripted draw left for {kind}()"
        expected, value = self.left.pop(0)
        assert expected == kind, f"the code drew {kind}() where the script has {expected}"
        return value

    def random(self):
        return self._next("random")

    def uniform(self, low, high):
        value = self._next("uniform")
        assert low <= value <= high, (value, low, high)
        return value

    def integers(self, low, high):
        value = self._next("integers")
        assert low <= value < high, (value, low, high)
        return value


def photometric_draws(brightness=None, contrast=None, contrast_first=True, saturation=None, hue=None):
    """The draws of `data.transforms.draw_photometric` (probability 0.5) that give these choices."""
    def step(kind, value):
        return [("random", 0.9)] if value is None else [("random", 0.1), (kind, value)]

    draws = step("uniform", brightness) + [("random", 0.1 if contrast_first else 0.9)]
    if contrast_first:
        draws += step("uniform", contrast)
    draws += step("uniform", saturation) + step("integers", hue)
    if not contrast_first:
        draws += step("uniform", contrast)
    return draws
