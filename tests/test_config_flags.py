"""Flags generated from the config dataclasses (lorbms_tf/config_flags.py).

The command lines of lorbms_tf.train, lorbms_tf.evaluate and lorbms_tf.transfer must accept
exactly what they did when each flag was written out by hand: tests/fixtures/cli_configs.json
was recorded then (tests/scripts/dump_cli_configs.py) and holds, per CLI, the config every
flagfile and a few explicit argument lists gave, the errors of refused ones, and every flag's
type, default, help and allowed values. A changed default, name or mapping fails here.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os

import pytest
from absl import flags

from lorbms_tf import config_flags, study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "tests", "fixtures", "cli_configs.json")) as _f:
  FIXTURE = json.load(_f)
CLIS = ("train", "evaluate", "transfer")


def _dump_script():
  spec = importlib.util.spec_from_file_location(
      "dump_cli_configs", os.path.join(ROOT, "tests", "scripts", "dump_cli_configs.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fresh(cli: str):
  """The CLI module and a FlagValues holding its flags only (not absl's global FLAGS)."""
  module = importlib.import_module(FIXTURE[cli]["module"])
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  return module, flag_values


def _parse(cli: str, key: str):
  import shlex  # pylint: disable=import-outside-toplevel
  module, flag_values = _fresh(cli)
  flag_values([FIXTURE[cli]["module"], *FIXTURE[cli]["common_args"], *shlex.split(key)])
  return module.config_from_flags(flag_values)


def _canonical(value) -> str:
  # sort_keys and json's own spelling of numbers: 0 and 0.0 differ, as int and float fields do
  return json.dumps(json.loads(json.dumps(value, default=str)), sort_keys=True)


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
  monkeypatch.chdir(ROOT)  # the flagfiles name each other relative to the repository root


# (a) The same configs as before, for every flagfile and argument list of the fixture.

def _cases(part):
  cases = [(c, k) for c in CLIS for k in FIXTURE[c][part]]
  ids = [f"{c}:{k or '(defaults)'}" for c, k in cases]
  return pytest.mark.parametrize("cli,key", cases, ids=ids)


@_cases("configs")
def test_flags_give_the_recorded_config(cli, key):
  config = dataclasses.asdict(_parse(cli, key))
  expected = FIXTURE[cli]["configs"][key]
  assert json.loads(_canonical(config)) == expected
  assert _canonical(config) == _canonical(expected)


@_cases("errors")
def test_refused_flags_give_the_recorded_error(cli, key):
  with pytest.raises((flags.Error, ValueError)) as info:
    _parse(cli, key)
  assert f"{type(info.value).__name__}: {info.value}" == FIXTURE[cli]["errors"][key]


@pytest.mark.parametrize("cli", CLIS)
def test_every_flag_keeps_its_name_type_default_and_help(cli):
  record = _dump_script()._flag_record
  _, flag_values = _fresh(cli)
  assert {name: record(flag_values[name]) for name in flag_values} == FIXTURE[cli]["flags"]


def test_every_train_flagfile_is_in_the_fixture():
  training = {f"--flagfile=configs/{name}.flags" for name in _dump_script().TRAIN_FLAGFILES}
  assert training <= set(FIXTURE["train"]["configs"])
  for name in os.listdir(os.path.join(ROOT, "configs")):
    with open(os.path.join(ROOT, "configs", name)) as f:
      text = f.read()
    # The others are the study's (lorbms_tf.ablate) and the evaluation's flagfiles.
    if "--variants" not in text and not name.startswith("eval_"):
      assert f"--flagfile=configs/{name}" in training, name


def test_study_variants_render_the_recorded_flags():
  assert set(study.BUILTIN_VARIANTS) == set(FIXTURE["study_variants"])
  from lorbms_tf import train  # pylint: disable=import-outside-toplevel
  for name, recorded in FIXTURE["study_variants"].items():
    assert study.parse_variant(name).flags == tuple(recorded), name
    assert set(study.BUILTIN_VARIANTS[name]) <= set(train.TRAIN_FLAGS.names), name
  assert study.variant_flags({"flip": False, "profile_steps": (1, 3), "rec_weight": 0.5}) == (
      "--flip=false", "--profile_steps=1,3", "--rec_weight=0.5")


# (b) Each training flag is a field with its help; a field is a flag or deliberately not.

def test_train_flags_are_the_config_fields_with_help():
  from lorbms_tf import train, train_lib  # pylint: disable=import-outside-toplevel
  from lorbms_tf.lorbms import LorbmsConfig  # pylint: disable=import-outside-toplevel
  fields = train.TRAIN_FLAGS.fields
  for field in fields.values():
    assert field.help.strip(), field.name
  _, flag_values = _fresh("train")
  for name in flag_values:
    assert flag_values[name].help.strip(), name
  by_path = {f.path: f.name for f in fields.values()}
  not_flags = {  # nested configs (flattened), set from another flag, or no flag at all
      ("objective",), ("eval_config",), ("objective", "seed"), ("objective", "threshold")}
  for field in dataclasses.fields(train_lib.TrainConfig):
    path = (field.name,)
    assert path in by_path or path in not_flags, f"TrainConfig.{field.name}: no help metadata"
  for field in dataclasses.fields(LorbmsConfig):
    path = ("objective", field.name)
    assert path in by_path or path in not_flags, f"LorbmsConfig.{field.name}: no help metadata"
  assert train.TRAIN_FLAGS.shared == {("objective", "seed"): "seed"}


# (c) A new field with help metadata is a new flag, nothing else to write.

@dataclasses.dataclass(frozen=True)
class _Inner:
  depth: int = dataclasses.field(default=2, metadata={"help": "Depth."})
  width: int = 5  # no help: a flag only through the outer config's "flags" metadata
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class _Toy:
  name: str = dataclasses.field(metadata={"help": "Required: no default."})
  rate: float = dataclasses.field(default=0.5, metadata={"help": "A rate."})
  mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b"), "help": "Mode."})
  norm: bool | None = dataclasses.field(default=None, metadata={"none_as": "preset",
                                                                "help": "Tri-state."})
  size: int | None = dataclasses.field(default=None, metadata={
      "none_as": "auto", "choices": (1, 2, 4), "help": "Size or auto."})
  model: str | None = dataclasses.field(default=None, metadata={"none_as": "",
                                                                "help": "Empty is None."})
  steps: tuple[int, int] | None = dataclasses.field(default=None, metadata={"help": "A,B."})
  sizes: tuple[int, ...] = dataclasses.field(default=(3, 4), metadata={"help": "Sizes."})
  limit: int | None = dataclasses.field(default=None, metadata={"help": "Optional int."})
  inner: _Inner = dataclasses.field(default=_Inner(), metadata={"flags": {
      "width": ("inner_width", "The inner width."), "seed": "seed"}})
  seed: int = dataclasses.field(default=0, metadata={"help": "Seed."})
  quiet: bool = False  # no help: not a flag


def _toy(*args, config_class=_Toy):
  spec = config_flags.ConfigFlags(config_class)
  flag_values = flags.FlagValues()
  spec.define(flag_values)
  flag_values(["toy", *args])
  return spec, flag_values, spec.config(flag_values)


def test_a_dataclass_becomes_flags():
  spec, flag_values, config = _toy("--name=n")
  assert set(spec.names) == {"name", "rate", "mode", "norm", "size", "model", "steps", "sizes",
                             "limit", "depth", "inner_width", "seed"}
  assert config == _Toy(name="n")
  assert flag_values["norm"].default == "preset" and flag_values["size"].default == "auto"
  assert flag_values["rate"].help == "A rate." and flag_values["name"].default is None
  _, _, config = _toy("--name=n", "--rate=2", "--mode=b", "--norm=false", "--size=4", "--model=",
                      "--steps=1,3", "--sizes=", "--limit=9", "--depth=7", "--inner_width=6",
                      "--seed=3")
  assert config == _Toy(name="n", rate=2.0, mode="b", norm=False, size=4, model=None,
                        steps=(1, 3), sizes=(), limit=9, inner=_Inner(depth=7, width=6, seed=3),
                        seed=3)
  _, _, config = _toy("--name=n", "--norm=true", "--size=auto", "--model=m", "--sizes=5")
  assert (config.norm, config.size, config.model, config.sizes) == (True, None, "m", (5,))


def test_a_new_field_with_help_is_a_new_flag():
  from lorbms_tf import train, train_lib  # pylint: disable=import-outside-toplevel
  extended = dataclasses.make_dataclass(
      "ExtendedTrainConfig",
      [("new_option", float, dataclasses.field(default=0.25, metadata={"help": "A new one."}))],
      bases=(train_lib.TrainConfig,), frozen=True)
  spec, flag_values, config = _toy("--workdir=/tmp/x", "--new_option=0.5", "--cycle_weight=0",
                                   "--seed=4", config_class=extended)
  assert set(spec.names) == {*train.TRAIN_FLAGS.names, "new_option"}
  assert flag_values["new_option"].help == "A new one."
  assert (config.new_option, config.objective.cycle_weight, config.objective.seed) == (0.5, 0, 4)
  _, _, toy = _toy("--name=n", config_class=dataclasses.make_dataclass(
      "NewToy", [("extra", str, dataclasses.field(default="x", metadata={"help": "Extra."}))],
      bases=(_Toy,), frozen=True))
  assert toy.extra == "x"


# (d) Bad values and bad definitions are errors.

@pytest.mark.parametrize("args", [["--generator_losses=gan"], ["--batch_size=x"],
                                  ["--decoder_spectral_norm=yes"], ["--precision=fp8"],
                                  ["--decoder_projection=3"], ["--unknown_flag=1"]])
def test_bad_training_flag_values_are_refused(args):
  _, flag_values = _fresh("train")
  with pytest.raises(flags.Error):
    flag_values(["train", "--workdir=/tmp/x", *args])


@pytest.mark.parametrize("args,match", [(["--profile_steps=1"], "takes A,B"),
                                        (["--profile_steps=3,1"], "0 <= A < B"),
                                        (["--cycle_weight=-1"], "cycle_weight must be >= 0")])
def test_bad_training_configs_are_refused(args, match):
  module, flag_values = _fresh("train")
  flag_values(["train", "--workdir=/tmp/x", *args])
  with pytest.raises(ValueError, match=match):
    module.config_from_flags(flag_values)


def test_missing_required_flag_and_bad_toy_values():
  spec = config_flags.ConfigFlags(_Toy)
  flag_values = flags.FlagValues()
  spec.define(flag_values)
  with pytest.raises(flags.IllegalFlagValueError, match="name"):
    flag_values(["toy"])
  for bad in ("--mode=c", "--norm=maybe", "--size=3", "--rate=x", "--limit=1.5"):
    with pytest.raises(flags.Error):
      _toy("--name=n", bad)
  with pytest.raises(ValueError, match="takes A,B, got 1,2,3"):
    _toy("--name=n", "--steps=1,2,3")


def test_bad_definitions_are_refused():
  @dataclasses.dataclass(frozen=True)
  class Clash:
    inner: _Inner = dataclasses.field(default=_Inner(), metadata={"flags": {
        "width": ("depth", "Clashes with inner.depth's flag.")}})

  @dataclasses.dataclass(frozen=True)
  class Unshared:
    inner: _Inner = dataclasses.field(default=_Inner(), metadata={"flags": {"seed": "seed"}})

  @dataclasses.dataclass(frozen=True)
  class NoHelp:
    rate: float = dataclasses.field(default=0.5, metadata={"help": ""})

  @dataclasses.dataclass(frozen=True)
  class Typo:
    inner: _Inner = dataclasses.field(default=_Inner(), metadata={"flags": {
        "widht": ("inner_width", "A typo.")}})

  with pytest.raises(ValueError, match="no field 'widht'"):
    config_flags.ConfigFlags(Typo)
  with pytest.raises(ValueError, match="--depth"):
    config_flags.ConfigFlags(Clash)
  with pytest.raises(ValueError, match="no field defines"):
    config_flags.ConfigFlags(Unshared)
  with pytest.raises(ValueError, match="help"):
    config_flags.ConfigFlags(NoHelp)
