"""absl flags generated from a config dataclass: each setting is one field (type, default, help).

A field is a flag when its metadata holds a help text; the flag is named after the field and
takes its type and default, so a new option is one field:

    rec_weight: float = dataclasses.field(default=0.904, metadata={"help": "Weight of L_rec."})

    TRAIN_FLAGS = config_flags.ConfigFlags(TrainConfig)
    TRAIN_FLAGS.define(flag_values)         # the CLI passes absl's; tests a fresh FlagValues()
    config = TRAIN_FLAGS.config(flag_values)  # after the flags are parsed

Metadata keys (only "help" is needed):

* ``help``: the flag's help text. A field without one is no flag and keeps its default.
* ``choices``: the allowed values (an enum flag: absl refuses any other).
* ``none_as``: for a field ``X | None``, the command-line word for None. With choices, or for a
  bool, the flag is an enum of that word and the values (``true``/``false`` for a bool), the
  word its default: ``--decoder_spectral_norm=preset|true|false``, ``--precision=auto|...``.
  For a free string the flag's default stays None and the word means None too
  (``--fid_model=`` with ``none_as=""``).
* ``flags``, on a nested dataclass field: how the sub-config's fields that have no flag of their
  own are set from the command line. ``{"num_test": ("eval_test_scenes", "help")}`` gives
  ``num_test`` the flag ``--eval_test_scenes`` (paths may go deeper: ``"classifier.epochs"``);
  ``{"seed": "seed"}`` sets it from another field's flag (``objective.seed`` from ``--seed``).

Types: bool, int, float, str, ``X | None`` (default None), tuples (list flags: ``--a=1,3``; a
fixed length such as ``tuple[int, int]`` is checked, an empty list is None) and nested
dataclasses, flattened: their fields with help are flags under their own names. A field
without a default (``workdir``) is a required flag. Two flags of one name are an error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterator, Mapping

from absl import flags

# Flags defined through this module belong to the module that asks for them (its --help).
flags.disclaim_key_flags()

HELP, CHOICES, NONE_AS, SUB_FLAGS = "help", "choices", "none_as", "flags"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclasses.dataclass(frozen=True)
class FlagField:
  """One flag and the config field it sets."""
  name: str
  path: tuple[str, ...]     # field names from the top config down: ("eval_config", "num_test")
  kind: type                # bool, int, float, str or tuple
  optional: bool            # the field is `X | None`
  default: Any              # the field's default; dataclasses.MISSING: a required flag
  help: str
  choices: tuple | None = None
  none_as: str | None = None
  item: type | None = None  # a tuple's element type
  length: int | None = None  # a fixed-length tuple's length

  @property
  def required(self) -> bool:
    return self.default is dataclasses.MISSING

  @property
  def stand_in(self) -> bool:
    """An enum flag whose first value (the default) stands for None."""
    return self.none_as is not None and (self.choices is not None or self.kind is bool)

  def enum_values(self) -> list[str] | None:
    if self.stand_in:
      values = ("true", "false") if self.kind is bool else tuple(str(c) for c in self.choices)
      return [self.none_as, *values]
    return None if self.choices is None else list(self.choices)

  def define(self, flag_values: flags.FlagValues) -> None:
    default = None if self.required else self.default
    kwargs = dict(flag_values=flag_values, required=self.required)
    if self.stand_in:
      flags.DEFINE_enum(self.name, self.none_as, self.enum_values(), self.help, **kwargs)
    elif self.choices is not None:
      flags.DEFINE_enum(self.name, default, self.enum_values(), self.help, **kwargs)
    elif self.kind is bool:
      flags.DEFINE_boolean(self.name, default, self.help, **kwargs)
    elif self.kind is int:
      flags.DEFINE_integer(self.name, default, self.help, **kwargs)
    elif self.kind is float:
      flags.DEFINE_float(self.name, default, self.help, **kwargs)
    elif self.kind is str:
      flags.DEFINE_string(self.name, default, self.help, **kwargs)
    elif self.kind is tuple:
      flags.DEFINE_list(self.name, None if default is None else [str(v) for v in default],
                        self.help, **kwargs)
    else:
      raise TypeError(f"{self.name}: no flag for {self.kind}")

  def value(self, flag_value: Any) -> Any:
    """The field's value from the parsed flag's (ValueError for a wrong tuple)."""
    if self.stand_in:
      if flag_value is None or flag_value == self.none_as:
        return None
      return flag_value == "true" if self.kind is bool else self.kind(flag_value)
    if self.none_as is not None and flag_value == self.none_as:
      return None
    if self.kind is tuple and flag_value is not None:
      if not flag_value:
        return None if self.optional else ()
      if self.length is not None and len(flag_value) != self.length:
        raise ValueError(f"--{self.name} takes {','.join(_LETTERS[:self.length])}, got "
                         f"{','.join(flag_value)}")
      return tuple(self.item(v) for v in flag_value)
    return flag_value


def _base_type(hint: Any) -> tuple[Any, bool]:
  """(X, True) for `X | None`, (X, False) for X."""
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) != 1 or len(typing.get_args(hint)) != 2:
      raise TypeError(f"no flag for {hint}: only X | None")
    return args[0], True
  return hint, False


def _flag_field(name: str, path: tuple[str, ...], hint: Any, default: Any, help_text: str,
                metadata: Mapping[str, Any]) -> FlagField:
  kind, optional = _base_type(hint)
  item = length = None
  if typing.get_origin(kind) is tuple:
    args = typing.get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis:
      item = args[0]
    elif args and len(set(args)) == 1:
      item, length = args[0], len(args)
    else:
      raise TypeError(f"{'.'.join(path)}: no flag for {kind}")
    kind = tuple
  if kind not in (bool, int, float, str, tuple):
    raise TypeError(f"{'.'.join(path)}: no flag for {kind}")
  none_as = metadata.get(NONE_AS)
  choices = metadata.get(CHOICES)
  if not help_text:
    raise ValueError(f"{'.'.join(path)}: a flag needs a help text")
  if none_as is not None and not optional:
    raise ValueError(f"{'.'.join(path)}: none_as needs a field X | None")
  flag = FlagField(name, path, kind, optional, default, help_text,
                   None if choices is None else tuple(choices), none_as, item, length)
  if flag.stand_in and default is not None:
    raise ValueError(f"{'.'.join(path)}: a none_as enum needs the default None")
  if flag.choices is not None and not flag.stand_in and not all(
      isinstance(c, str) for c in flag.choices):
    raise TypeError(f"{'.'.join(path)}: choices of a plain enum flag must be strings")
  return flag


def _has_field(config_class: type, parts: list[str]) -> bool:
  names = {f.name for f in dataclasses.fields(config_class)}
  if parts[0] not in names:
    return False
  if len(parts) == 1:
    return True
  hint = typing.get_type_hints(config_class)[parts[0]]
  return dataclasses.is_dataclass(hint) and _has_field(hint, parts[1:])


def _walk(config_class: type, default: Any, path: tuple[str, ...],
          renames: Mapping[tuple[str, ...], Any]
          ) -> Iterator[FlagField | tuple[tuple[str, ...], str]]:
  """The flags of a (nested) config class, and (path, flag name) of the fields that share one."""
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    field_path = (*path, field.name)
    if default is not None:
      field_default = getattr(default, field.name)
    elif field.default is not dataclasses.MISSING:
      field_default = field.default
    elif field.default_factory is not dataclasses.MISSING:
      field_default = field.default_factory()
    else:
      field_default = dataclasses.MISSING
    hint = hints[field.name]
    if dataclasses.is_dataclass(hint):
      if field_default is dataclasses.MISSING:
        raise ValueError(f"{'.'.join(field_path)}: a nested config needs a default")
      sub_flags = field.metadata.get(SUB_FLAGS, {})
      for key in sub_flags:
        if not _has_field(hint, key.split(".")):
          raise ValueError(f"{'.'.join(field_path)}: {hint.__name__} has no field {key!r}")
      nested = {**renames, **{(*field_path, *key.split(".")): value
                              for key, value in sub_flags.items()}}
      yield from _walk(hint, field_default, field_path, nested)
      continue
    rename = renames.get(field_path)
    if isinstance(rename, str):
      yield field_path, rename
    elif rename is not None:
      name, help_text = rename
      yield _flag_field(name, field_path, hint, field_default, help_text, field.metadata)
    elif HELP in field.metadata:
      yield _flag_field(field.name, field_path, hint, field_default, field.metadata[HELP],
                        field.metadata)


class ConfigFlags:
  """The flags of a config dataclass: define them, then build the config from their values."""

  def __init__(self, config_class: type):
    if not dataclasses.is_dataclass(config_class):
      raise TypeError(f"{config_class} is not a dataclass")
    self.config_class = config_class
    self.fields: dict[str, FlagField] = {}
    self.shared: dict[tuple[str, ...], str] = {}  # field path -> the flag it takes its value from
    for entry in _walk(config_class, None, (), {}):
      if isinstance(entry, FlagField):
        if entry.name in self.fields:
          raise ValueError(f"flag --{entry.name} of {'.'.join(entry.path)} is also "
                           f"{'.'.join(self.fields[entry.name].path)}'s")
        self.fields[entry.name] = entry
      else:
        self.shared[entry[0]] = entry[1]
    for path, name in self.shared.items():
      if name not in self.fields:
        raise ValueError(f"{'.'.join(path)} shares flag --{name}, which no field defines")

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self.fields)

  def define(self, flag_values: flags.FlagValues) -> None:
    for field in self.fields.values():
      field.define(flag_values)

  def values(self, flag_values: flags.FlagValues) -> dict[tuple[str, ...], Any]:
    """{field path: value} of every field a flag sets (ValueError for a bad value)."""
    values = {f.path: f.value(flag_values[f.name].value) for f in self.fields.values()}
    for path, name in self.shared.items():
      values[path] = values[self.fields[name].path]
    return values

  def config(self, flag_values: flags.FlagValues) -> Any:
    """The config of the parsed flags: the defaults of the fields no flag sets."""
    return _build(self.config_class, None, (), self.values(flag_values))


def _build(config_class: type, default: Any, path: tuple[str, ...],
           values: Mapping[tuple[str, ...], Any]) -> Any:
  kwargs = {}
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    field_path = (*path, field.name)
    if field_path in values:
      kwargs[field.name] = values[field_path]
    elif any(p[:len(field_path)] == field_path for p in values):
      nested_default = (getattr(default, field.name) if default is not None else
                        field.default if field.default is not dataclasses.MISSING
                        else field.default_factory())
      kwargs[field.name] = _build(hints[field.name], nested_default, field_path, values)
  if default is None:
    return config_class(**kwargs)
  return dataclasses.replace(default, **kwargs)
