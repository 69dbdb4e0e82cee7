"""`python -m recipes`: lists the runnable recipes, one line each."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import recipes


def list_recipes() -> dict[str, str]:
    """Recipe module names and the first line of their docstrings.

    A recipe is a module of the `recipes` package that defines `DEFAULTS` (its configuration).
    """
    found = {}
    for module_info in pkgutil.iter_modules(recipes.__path__):
        if module_info.ispkg or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"recipes.{module_info.name}")
        if isinstance(getattr(module, "DEFAULTS", None), dict):
            found[module_info.name] = (module.__doc__ or "").strip().splitlines()[0]
    return dict(sorted(found.items()))


def recipe_defaults(recipe: str) -> dict[str, Any]:
    """The `DEFAULTS` of recipe module `recipes.<recipe>`.

    Raises:
        ValueError: no such recipe; the message lists the recipes.
    """
    known = list_recipes()
    if recipe not in known:
        raise ValueError(f"unknown recipe {recipe!r}; the recipes are: {', '.join(known)}")
    return dict(importlib.import_module(f"recipes.{recipe}").DEFAULTS)


def main() -> None:
    recipes_found = list_recipes()
    width = max(map(len, recipes_found))
    print("Recipes (run `python -m recipes.<name> --help` for the flags):")
    for name, summary in recipes_found.items():
        print(f"  {name:<{width}}  {summary}")


if __name__ == "__main__":
    main()
