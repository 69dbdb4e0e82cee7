"""Names given by users, resolved the same way for every family of names in the project.

Models, datasets, optimizers, schedules, losses, augmentations, initializers, knobs and
distribution strategies are all chosen by name, on command lines, in configs and in code. A
`Names` table resolves any spelling of a name to its canonical form: case, `-`, `_` and spaces are
ignored, so `"Momentum"`, `"momentum"` and `"MOMENTUM"` are one name, and so are
`"proximal-adagrad"`, `"proximal_adagrad"`, `"Proximal Adagrad"` and `"ProximalAdagrad"`. Aliases
("sgd" for GradientDescent, "msra" for he) resolve to their target.

An unknown name raises `ValueError` naming the family, suggesting the closest valid name and
listing them all:

    Unknown optimizer 'Momentun'. Did you mean 'Momentum'? Valid names: GradientDescent, ...

Getters that also take a config dict (`{"name": ..., **options}`) use `split_config` and
`refuse_options` so that every family reads and refuses those the same way.

This module sits at the bottom of the package graph (it imports only the standard library), so
the layers, the zoo and the training machinery can all use it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

_SEPARATORS = re.compile(r"[\s_-]+")
# difflib's similarity ratio a suggestion needs; 0.6 is difflib's own default.
_SUGGESTION_CUTOFF = 0.6


def name_key(name: str) -> str:
    """The form names are matched in: lower case, without `-`, `_` and whitespace."""
    return _SEPARATORS.sub("", name).lower()


def _shared_start(first: str, second: str) -> int:
    """How many leading characters two strings have in common."""
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            return index
    return min(len(first), len(second))


class Names:
    """A family of names, each with its accepted spellings, and the resolver for them.

    Args:
        kind: what the names name, for messages ("optimizer", "learning-rate schedule", ...).
        names: the canonical names, in the order messages list them.
        aliases: other names for some of them, `{alias: canonical name}`.
        spelling: rewrites a user's name before matching, for families with a wider notation
            (tf.train's `tf.train.<Name>Optimizer`); messages still quote the name as given.
        valid: replaces the list of valid names in messages, for families too large to list.
        allow_ambiguous: whether two names may share a key (TFDS has both `movie_lens` and
            `movielens`); such a key then only resolves when spelled exactly. Tables of the
            project's own names refuse it, so that a new name cannot shadow an old one.

    Raises:
        ValueError: for an alias of an unknown name, or (unless allowed) two names or aliases
            with the same key.
    """

    def __init__(
        self,
        kind: str,
        names: Iterable[str],
        aliases: Mapping[str, str] | None = None,
        *,
        spelling: Callable[[str], str] | None = None,
        valid: str | None = None,
        allow_ambiguous: bool = False,
    ) -> None:
        self.kind = kind
        self.names = tuple(names)
        self.aliases = dict(aliases or {})
        self._spelling = spelling
        self._valid = valid
        self._exact = {name: name for name in self.names}
        # Key -> (spelling shown in suggestions, canonical names it may mean).
        self._keys: dict[str, tuple[str, list[str]]] = {}
        for name in self.names:
            self._add(name, name, allow_ambiguous)
        for alias, target in self.aliases.items():
            if target not in self._exact:
                raise ValueError(f"{kind} alias {alias!r} names {target!r}, which is not a name.")
            self._exact.setdefault(alias, target)
            self._add(alias, target, allow_ambiguous)

    def _add(self, spelling: str, target: str, allow_ambiguous: bool) -> None:
        key = name_key(spelling)
        shown, targets = self._keys.setdefault(key, (spelling, []))
        if target in targets:
            return
        if targets and not allow_ambiguous:
            raise ValueError(
                f"{self.kind} names {shown!r} and {spelling!r} are the same name once case, '-', "
                "'_' and spaces are ignored."
            )
        targets.append(target)

    def _spelled(self, name: str) -> str:
        name = name.strip()
        return self._spelling(name) if self._spelling else name

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return self.find(name) is not None

    def find(self, name: object) -> str | None:
        """The canonical name `name` spells, or None when it spells none (or several)."""
        if not isinstance(name, str):
            return None
        spelled = self._spelled(name)
        if spelled in self._exact:
            return self._exact[spelled]
        _, targets = self._keys.get(name_key(spelled), ("", []))
        return targets[0] if len(targets) == 1 else None

    def resolve(self, name: object) -> str:
        """The canonical name `name` spells.

        Raises:
            ValueError: for anything else; the message suggests the closest name and lists the
                valid ones.
        """
        canonical = self.find(name)
        if canonical is None:
            raise self.unknown(name)
        return canonical

    def closest(self, name: str) -> str | None:
        """The valid name (or alias) nearest to `name` once both are reduced to their keys.

        Nearest by difflib's similarity ratio; among equally similar names, the one sharing the
        longest start with `name` ("resnet2" is nearer "resnet20" than "resnet32"), then the
        first listed.
        """
        key = name_key(self._spelled(name))
        matcher = difflib.SequenceMatcher(b=key)
        best, best_rank = None, (_SUGGESTION_CUTOFF, -1)
        for candidate in self._keys:
            matcher.set_seq1(candidate)
            rank = (matcher.ratio(), _shared_start(candidate, key))
            if rank[0] >= _SUGGESTION_CUTOFF and rank > best_rank:
                best, best_rank = candidate, rank
        return None if best is None else self._keys[best][0]

    def unknown(self, name: object) -> ValueError:
        """The error for a name this family does not have (raise it)."""
        if not isinstance(name, str):
            return ValueError(
                f"{self.kind.capitalize()} name must be a string. Received: {name!r}. "
                f"{self.describe_valid()}"
            )
        _, targets = self._keys.get(name_key(self._spelled(name)), ("", []))
        if len(targets) > 1:
            return ValueError(
                f"{self.kind.capitalize()} {name!r} is ambiguous: it may be any of "
                f"{', '.join(targets)}; spell one of them exactly."
            )
        suggestion = self.closest(name)
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        return ValueError(f"Unknown {self.kind} {name!r}.{hint} {self.describe_valid()}")

    def describe_valid(self) -> str:
        """The sentences listing what this family accepts, as error messages give them."""
        if self._valid is not None:
            return self._valid
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in self.aliases.items())
        aliases = f" (aliases: {aliases})" if aliases else ""
        return (
            f"Valid names: {', '.join(self.names)}{aliases}. Case, '-', '_' and spaces are ignored."
        )


def from_identifier(
    kind: str,
    identifier: Any,
    options: Mapping[str, Any],
    *,
    built_type: type | tuple[type, ...],
    deserialize: Callable[[dict[str, Any]], Any],
) -> tuple[Any, Any, dict[str, Any]]:
    """What a family's Keras-style `get(identifier, **options)` was handed.

    Returns `(built, name, options)`: `built` is a ready object (an instance of `built_type`, or
    one deserialized from a Keras config `{"class_name": ..., "config": ...}`) and then `name` is
    None; otherwise `name` and `options` come from a name or the family's natural dict form.

    Raises:
        ValueError: for options given with a ready object, or a malformed dict.
    """
    if isinstance(identifier, built_type):
        refuse_options(kind, f"a built {kind}", options)
        return identifier, None, {}
    if isinstance(identifier, Mapping):
        if "class_name" in identifier:
            refuse_options(kind, "a Keras config", options)
            return deserialize(dict(identifier)), None, {}
        name, merged = split_config(kind, identifier, options)
        return None, name, merged
    return None, identifier, dict(options)


def split_config(
    kind: str, config: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Reads a family's natural dict form, `{"name": ..., **options}`.

    Returns the name and the dict's options merged with `options`, those given beside the dict.

    Raises:
        ValueError: when the dict has no "name", or an option is given both in it and beside it.
    """
    if "name" not in config:
        raise ValueError(
            f"A {kind} config dict needs a 'name' entry (or Keras' 'class_name' and 'config'). "
            f"Received: {dict(config)!r}"
        )
    merged = {key: value for key, value in config.items() if key != "name"}
    twice = sorted(set(merged) & set(options))
    if twice:
        raise ValueError(
            f"{kind.capitalize()} option(s) {', '.join(twice)} given both in the config dict and "
            "as arguments; give each once."
        )
    return config["name"], {**merged, **options}


def refuse_options(kind: str, what: str, options: Mapping[str, Any]) -> None:
    """Refuses options given with something that is already built or fully configured.

    Args:
        kind: the family, for the message.
        what: what was given instead of a name ("an optimizer instance", "a Keras config").
        options: the options given with it; any at all is an error, since none could apply.
    """
    if options:
        raise ValueError(
            f"{kind.capitalize()} options {', '.join(sorted(options))} cannot be applied to "
            f"{what}: it is used as it is. Pass a name to configure a new {kind}."
        )
